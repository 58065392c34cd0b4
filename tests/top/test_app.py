"""`top --count N`, not on a terminal, against the fake servers and a fake NVML box.

The command's coroutine runs in-process here (so the fake NVML can stand in for the GPU) on a plain text stream,
read as a user piping it would: plain frames, one per gather, every number the agent's own sources gave.
tests/top/test_cli.py runs the real command line in a subprocess.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import socket
import subprocess
import sys

import psutil
import pytest
import yaml

from telegraf_llm_input.config import load_config
from telegraf_llm_input.log import setup_logging
from telegraf_llm_input.top.app import top
from tests.fakes.llm import Snap, fake_llamacpp, fake_vllm, llamacpp_metrics, vllm_page
from tests.fakes.nvml import FakeNvml
from tests.fakes.streaming import Script, StreamingServer

BOUNDS = [0.05, 0.1, 0.25, 0.5, 1.0]
HEADER = "telegraf-llm-input top"


def vllm_snap(i: int) -> Snap:
    """Gather i: 1000 prompt and 400 generated tokens more; ttft of 10 new requests all in (0.25, 0.5] s."""
    return Snap(
        running=3,
        waiting=1,
        kv=0.42,
        prompt=1000 * i,
        generation=400 * i,
        finished={"stop": 10 * i},
        hists={"ttft": (BOUNDS, [0, 0, 0, 10 * i, 10 * i, 10 * i], 4.0 * i), "tpot": (BOUNDS, [10 * i] * 6, 0.2 * i)},
    )


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def frames(out: str) -> list[str]:
    assert out.startswith(HEADER), out
    return [HEADER + f for f in out.split(HEADER)[1:]]


def block(frame: str, target: str) -> str:
    """The lines of one target's block: its title line up to the next title, GPU table or host line."""
    lines = frame.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"\S+ {re.escape(target)}  ", line))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return "\n".join(lines[start:end])


@pytest.fixture
def servers():
    with (
        fake_vllm([vllm_page({"Qwen/Qwen2.5-1.5B-Instruct": vllm_snap(i)}) for i in range(1, 50)]) as vllm,
        fake_llamacpp(
            [llamacpp_metrics(100 * i, 50 * i, i, 2 * i, processing=1) for i in range(1, 50)], busy=1
        ) as llama,
        StreamingServer(Script(ttft_s=0.1)) as stream,
    ):
        yield vllm, llama, stream


def run_top(tmp_path, targets, *, count: int, interval: str, gpu: dict | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, the agent's log lines as they would reach stderr). A generous gather deadline: on a
    loaded machine a slow first gather must not make a target look down."""
    path = tmp_path / "top.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "targets": targets,
                "gpu": gpu or {"enabled": False},
                "agent": {"hostname": "box", "interval": interval, "gather_timeout": "5s"},
            }
        )
    )
    out, err = io.StringIO(), io.StringIO()
    setup_logging("info", stream=err)
    code = asyncio.run(top(load_config(path), count=count, stream=out))
    logging.getLogger("telegraf_llm_input").handlers[0].flush()
    return code, out.getvalue(), err.getvalue()


def test_two_frames_of_every_target_with_the_agents_numbers(tmp_path, monkeypatch, servers):
    vllm, llama, stream = servers
    nvml = FakeNvml()
    nvml.install(monkeypatch)
    dead = closed_port()
    targets = [
        {"url": vllm.url, "type": "vllm", "name": "vllm-a"},
        {"url": llama.url, "type": "llamacpp", "name": "llama"},
        {"url": f"http://127.0.0.1:{dead}", "type": "vllm", "name": "gone", "retries": 0},
    ]
    code, out, err = run_top(tmp_path, targets, count=2, interval="2s", gpu={"indices": [0, 6]})
    assert code == 0, err
    assert "\x1b" not in out, "escape codes on a pipe"
    first, second = frames(out)
    assert "box" in first.splitlines()[0] and "every 2s" in first.splitlines()[0]

    v = block(second, "vllm-a")
    assert "vllm  Qwen/Qwen2.5-1.5B-Instruct" in v and v.splitlines()[0].endswith("UP")
    assert "run 3 wait 1" in v and "kv 42%" in v
    # Interval percentiles from bucket deltas: all 10 new requests in (0.25, 0.5] s -> p50 at 375 ms, p95 at 487.5.
    assert "ttft p50 375 ms p95 488 ms" in v, v
    assert "tpot p50 25 ms p95 48 ms" in v, v
    gen = float(re.search(r"gen ([\d.]+) tok/s", v).group(1))
    prompt = float(re.search(r"prompt ([\d.]+) tok/s", v).group(1))
    assert prompt == pytest.approx(2.5 * gen, rel=0.02)  # 1000 vs 400 tokens over the same interval
    assert "gen tok/s" in v and "ttft p95" in v  # the sparklines, from the second gather on
    assert "gen - tok/s" in block(first, "vllm-a")  # no rate from one scrape

    lc = block(second, "llama")
    assert "llamacpp" in lc and "qwen2.5-1.5b-q4_k_m.gguf" in lc and "slots 1/2" in lc and "run 1 wait 0" in lc
    assert re.search(r"process cpu \d+% rss [\d.]+ MiB", lc), lc  # the fake runs in this process: our own pid
    assert "requests unseen: no log of it found" in lc  # llama.cpp counts requests in its log only

    # A down target shows the same reason the log gives, in every frame.
    logged = re.search(r"^W! target gone: down: (.+)$", err, re.M)
    assert logged, err
    for frame in (first, second):
        g = block(frame, "gone")
        assert g.splitlines()[0].endswith("DOWN")
        assert f"why: {logged.group(1)}" in g and "connection refused" in g

    gpus = [line for line in second.splitlines() if re.match(r"\s+\d+ NVIDIA", line)]
    assert len(gpus) == 2, second
    h100, rtx = nvml.gpus[0], nvml.gpus[6]
    assert gpus[0].split()[0] == "0" and "NVIDIA H100 80GB HBM3" in gpus[0]
    assert f"util {h100.utilization[0]:>3}%" in gpus[0] and f"{h100.temperature}°C" in gpus[0]
    assert f"pwr {h100.power_mw / 1000:.0f}/{h100.power_limit_mw / 1000:.0f} W" in gpus[0]
    assert f"{h100.memory_used / 2**30:.1f}/{h100.memory_total / 2**30:.1f} GiB" in gpus[0]
    assert "NVIDIA GeForce RTX 4090" in gpus[1] and f"util {rtx.utilization[0]:>3}%" in gpus[1]
    assert re.search(r"^host cpu \d+%", second, re.M)
    assert all(len(line) <= 80 for line in out.splitlines())


def test_probe_results_stay_on_screen(tmp_path, servers):
    """A probe finishes on its own clock; its last TTFT/TTFA/tokens per second stay until the next one."""
    _, _, stream = servers
    stream.update(reasoning=(" hmm",) * 5)
    targets = [
        {
            "url": stream.url,
            "type": "openai",
            "name": "chat",
            "probe": {"enabled": True, "every": "1s", "max_tokens": 32},
        }
    ]
    code, out, err = run_top(tmp_path, targets, count=3, interval="1s")
    assert code == 0, err
    shown = [block(f, "chat") for f in frames(out)]
    assert "probe" not in shown[0]  # the first probe starts with the first gather
    probe = re.search(r"probe \d+s ago ttft (\d+) ms ttfa (\d+) ms ([\d.]+) tok/s", shown[-1])
    assert probe, shown[-1]
    ttft, ttfa, rate = int(probe.group(1)), int(probe.group(2)), float(probe.group(3))
    assert 100 <= ttft < ttfa  # first token after the fake's 100 ms; the answer after 5 reasoning tokens
    assert 10 < rate < 200  # the fake sends one token per 20 ms


def test_stops_after_count_with_one_frame_per_gather(tmp_path, servers):
    vllm, _, _ = servers
    code, out, err = run_top(tmp_path, [{"url": vllm.url, "type": "vllm", "name": "one"}], count=3, interval="0.5s")
    assert code == 0, err
    assert len(frames(out)) == 3
    assert len([r for r in vllm.requests if r.path == "/metrics"]) == 3


def test_goes_down_with_the_logs_reason(tmp_path):
    """Up, then down (the page turns to 500s), with the reason the log gives."""
    from tests.fakes.server import Reply

    page = vllm_page({"m": vllm_snap(1)})
    with fake_vllm(page) as vllm:
        vllm.script("/metrics", Reply(page), Reply(vllm_page({"m": vllm_snap(2)})), Reply("oops", status=500))
        code, out, err = run_top(
            tmp_path, [{"url": vllm.url, "type": "vllm", "name": "flaky", "retries": 0}], count=3, interval="1s"
        )
    assert code == 0
    one, two, three = (block(f, "flaky") for f in frames(out))
    assert one.splitlines()[0].endswith("UP") and two.splitlines()[0].endswith("UP")
    assert three.splitlines()[0].endswith("DOWN") and "500" in three
    reason = re.search(r"^W! target flaky: down: (.+)$", err, re.M).group(1)
    assert f"why: {reason}" in three


SERVER_WITH_A_RUNNER = r"""
import subprocess, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"up_here 1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), Page)
threading.Thread(target=srv.serve_forever, daemon=True).start()
print(srv.server_address[1], flush=True)
RUNNER = "import time; b = bytearray(96 << 20); b[::4096] = b'x' * len(b[::4096]); print('ready', flush=True); time.sleep(600)"
for line in sys.stdin:  # "load": start a runner child that holds the model's memory, as `ollama serve` does
    child = subprocess.Popen([sys.executable, "-c", RUNNER], stdout=subprocess.PIPE)
    child.stdout.readline()
    print("loaded", flush=True)
"""


def test_process_memory_is_the_servers_tree_and_a_new_runner_shows_in_the_next_frame(tmp_path):
    """`ollama serve` holds little; the model lives in its `ollama runner` child, started when a model loads."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_WITH_A_RUNNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())

        class LoadAfterTheFirstFrame(io.StringIO):
            loaded = False

            def write(self, text: str) -> int:
                if not self.loaded:  # between the first and the second gather, a model loads
                    self.loaded = True
                    server.stdin.write("load\n")
                    server.stdin.flush()
                    assert server.stdout.readline() == "loaded\n"
                return super().write(text)

        path = tmp_path / "top.yaml"
        target = {"url": f"http://127.0.0.1:{port}", "type": "prometheus", "name": "ollama-like"}
        path.write_text(
            yaml.safe_dump(
                {"targets": [target], "gpu": {"enabled": False}, "agent": {"interval": "1s", "gather_timeout": "5s"}}
            )
        )
        out = LoadAfterTheFirstFrame()
        assert asyncio.run(top(load_config(path), count=2, stream=out)) == 0
        first, second = (block(f, "ollama-like") for f in frames(out.getvalue()))
    finally:
        for runner in psutil.Process(server.pid).children(recursive=True):  # the runner outlives a killed server
            runner.kill()
        server.kill()
        server.wait()
    mib = {"MiB": 1.0, "GiB": 1024.0}
    before = re.search(r"process cpu \S+ rss ([\d.]+) (MiB|GiB)", first)
    after = re.search(r"process cpu \S+ rss ([\d.]+) (MiB|GiB)", second)
    assert before and after, (first, second)
    assert float(before.group(1)) * mib[before.group(2)] < 96
    assert float(after.group(1)) * mib[after.group(2)] >= 96  # the runner's 96 MiB, seen at once, not a minute later
