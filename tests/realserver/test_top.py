"""`telegraf-llm-input top --count 2`, piped, against the real llama-server (tiny random model).

Between the two frames the test sends completions; the second frame must show the server as the agent reads it:
up, llama.cpp, its model, its slots, tokens/s from its own counters, its process's RSS, the probe's numbers.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

pytestmark = pytest.mark.realserver

REPO = Path(__file__).resolve().parents[2]
HEADER = "telegraf-llm-input top"
INTERVAL_S = 4.0


def read_frame(stdout) -> str:
    """One plain frame: from the header to the blank line that ends it."""
    lines = []
    while True:
        line = stdout.readline()
        assert line, "top ended before the frame did: " + "".join(lines)
        if line == "\n" and lines:
            return "".join(lines)
        lines.append(line)


def test_top_shows_the_real_server(llama_server, tmp_path):
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
            "2",
            "--interval",
            f"{INTERVAL_S:g}s",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = read_frame(top.stdout)
        started = time.monotonic()
        before = llama_server.metrics()["tokens_predicted_total"]
        for i in range(2):
            llama_server.complete(f"Request {i}: the weather in city {i}.", 24)
        assert time.monotonic() - started < INTERVAL_S - 0.5, "completions outlasted the interval: retune the test"
        second = read_frame(top.stdout)
        out, err = top.communicate(timeout=60)
    finally:
        if top.poll() is None:
            top.kill()
            top.wait()
    assert top.returncode == 0, err
    assert out == "" and "\x1b" not in first + second
    assert first.startswith(HEADER) and second.startswith(HEADER)

    lines = second.splitlines()
    title = next(line for line in lines if re.match(r"\S+ tiny  ", line))
    assert "llamacpp" in title and "tiny-llama" in title and title.endswith("UP"), second
    assert "slots 0/2" in second
    gen = float(re.search(r"gen ([\d.]+) tok/s", second).group(1))
    made = llama_server.metrics()["tokens_predicted_total"] - before
    assert made >= 2 * 24
    # tokens/s is Δtokens_predicted_total over the gather interval (about INTERVAL_S; the probe's 8 tokens may
    # fall on either side of `before`).
    assert (made - 8) / (INTERVAL_S * 1.5) <= gen <= (made + 8) / (INTERVAL_S * 0.75), (gen, made)

    rss = re.search(r"process cpu \d+% rss ([\d.]+) MiB", second)
    assert rss, second
    assert float(rss.group(1)) * 2**20 == pytest.approx(psutil.Process(llama_server.pid).memory_info().rss, rel=0.25)

    probe = re.search(r"probe \d+s ago ttft ([\d.]+) ms .*?([\d.]+k?) tok/s", second)  # fmt_num: 13.6k above 10,000
    assert probe, second
    assert float(probe.group(1)) > 0 and float(probe.group(2).removesuffix("k")) > 0
