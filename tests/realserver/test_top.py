"""`telegraf-llm-input top --count 2`, piped, against the real llama-server (tiny random model).

After the first frame the test sends completions; the frames after must show the server as the agent reads it:
up, llama.cpp, its model, its slots, tokens/s from its own counters, its process's RSS, the probe's numbers.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

pytestmark = pytest.mark.realserver

REPO = Path(__file__).resolve().parents[2]
HEADER = "telegraf-llm-input top"
INTERVAL_S = 2.0
PROBE = re.compile(r"probe \d+s ago ttft ([\d.]+) ms .*?([\d.]+k?) tok/s")  # fmt_num: 13.6k above 10,000


def read_frames(stdout, frames: queue.Queue) -> None:
    """Each plain frame (from the header to the blank line that ends it) with the time it arrived; None at EOF."""
    lines: list[str] = []
    for line in stdout:
        if line == "\n" and lines:
            frames.put((time.monotonic(), "".join(lines)))
            lines = []
        elif line != "\n":
            lines.append(line)
    frames.put(None)


def next_frame(frames: queue.Queue) -> tuple[float, str]:
    got = frames.get(timeout=120)
    assert got is not None, "top ended early"
    return got


def test_top_shows_the_real_server(llama_server, tmp_path):
    """No frame is assumed to come at a given time: the completions run while top draws what it draws; the
    frames checked are those up to the second one that arrived after they ended (its gather started after the
    first one was drawn, so after they ended: their tokens are all in the frames' rates)."""
    config = tmp_path / "top.yaml"
    probe = {"enabled": True, "every": "1h", "max_tokens": 8, "timeout": "60s"}
    config.write_text(
        yaml.safe_dump(
            {
                "targets": [{"url": llama_server.url, "name": "tiny", "type": "auto", "timeout": "2s", "probe": probe}],
                "gpu": {"enabled": False},
            }
        )
    )
    top = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telegraf_llm_input",
            "top",
            "--config",
            str(config),
            "--count",
            "1000",
            "--interval",
            f"{INTERVAL_S:g}s",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    frames: queue.Queue = queue.Queue()
    reader = threading.Thread(target=read_frames, args=(top.stdout, frames), daemon=True)
    reader.start()
    try:
        _, first = next_frame(frames)
        before = llama_server.metrics()["tokens_predicted_total"]
        for i in range(2):
            llama_server.complete(f"Request {i}: the weather in city {i}.", 24)
        ended = time.monotonic()
        later: list[str] = []
        after_end = 0
        while after_end < 2 or not PROBE.search(later[-1]):  # and the probe's first result is on the screen
            assert len(later) < 60, "no probe result in 60 frames: " + (later[-1] if later else first)
            arrived, frame = next_frame(frames)
            later.append(frame)
            after_end += arrived > ended
        made = llama_server.metrics()["tokens_predicted_total"] - before
        top.send_signal(signal.SIGTERM)
        _, err = top.communicate(timeout=60)
    finally:
        if top.poll() is None:
            top.kill()
            top.wait()
    assert top.returncode == 0, err
    assert "\x1b" not in first + "".join(later)
    assert first.startswith(HEADER) and all(frame.startswith(HEADER) for frame in later)

    last = later[-1]
    lines = last.splitlines()
    title = next(line for line in lines if re.match(r"\S+ tiny  ", line))
    assert "llamacpp" in title and "tiny-llama" in title and title.endswith("UP"), last
    assert "slots 0/2" in last
    assert made >= 2 * 24
    # tokens/s is Δtokens_predicted_total over each gather interval (about INTERVAL_S); summed over the frames
    # since the first it is what the server counted since (the probe's 8 tokens may fall on either side of it).
    rates = [float(m.group(1)) for frame in later if (m := re.search(r"gen ([\d.]+) tok/s", frame))]
    assert rates, last
    assert (made - 8) / (INTERVAL_S * 1.5) <= sum(rates) <= (made + 8) / (INTERVAL_S * 0.75), (rates, made)

    rss = re.search(r"process cpu \d+% rss ([\d.]+) MiB", last)
    assert rss, last
    assert float(rss.group(1)) * 2**20 == pytest.approx(psutil.Process(llama_server.pid).memory_info().rss, rel=0.25)

    probe = PROBE.search(last)
    assert float(probe.group(1)) > 0 and float(probe.group(2).removesuffix("k")) > 0
