"""Memory: RSS of the agent in Telegraf execd mode after 10k gathers, and how much it grew.

The agent runs as Telegraf runs it (`--signal stdin`: one gather per newline on stdin) with a llama.cpp target
(static pages served by another process; BENCH_MEMORY_TARGETS=2 adds a vLLM one) and the host source. Newlines
are fed as fast as it answers: the next one goes when the previous gather's `llm_agent` line is out. A leak of even 100 bytes per
gather shows as ~1 MB here; growth that continues in the second half is a leak, growth that stops is
warm-up (allocator pools, caches). Baseline: an idle Python with the agent's runtime dependencies imported.
Run: python3 -m bench.memory
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from bench.execd import execd_agent, trigger
from bench.pages import llamacpp_pages, vllm_pages
from bench.pageserver import PageServer
from bench.report import record

GATHERS = int(os.environ.get("BENCH_MEMORY_GATHERS", "10000"))
WARMUP = 200
TARGETS = int(os.environ.get("BENCH_MEMORY_TARGETS", "1"))  # 2 adds a vLLM target (~40% slower)


def gather_n(agent: subprocess.Popen[str], n: int, done: int) -> int:
    """Feed n newlines one at a time, each after the previous gather's output; returns the gathers done."""
    for _ in range(n):
        done += 1
        trigger(agent, done)
    return done


def baseline_rss() -> int:
    code = "import httpx, psutil, yaml, asyncio, sys; sys.stdout.write('ok\\n'); sys.stdout.flush(); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        return psutil.Process(proc.pid).memory_info().rss
    finally:
        proc.stdin.close()
        proc.wait(10)


def main() -> None:
    kinds = ["llama.cpp", "vLLM"][:TARGETS]
    checkpoints = sorted({WARMUP, GATHERS // 2, GATHERS})
    rss: dict[int, int] = {}
    with (
        PageServer(llamacpp_pages()) as llama,
        PageServer(vllm_pages()) as vllm,
        tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp,
    ):
        config = Path(tmp) / "agent.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "targets": [
                        {"url": llama.url, "type": "llamacpp", "name": "llama", "process": {"enabled": False}},
                        {"url": vllm.url, "type": "vllm", "name": "vllm", "process": {"enabled": False}},
                    ][:TARGETS],
                    "gpu": {"enabled": False},
                }
            )
        )
        with execd_agent(config) as agent:
            ps = psutil.Process(agent.pid)
            done = 0
            started = time.monotonic()
            for checkpoint in checkpoints:
                done = gather_n(agent, checkpoint - done, done)
                rss[done] = ps.memory_info().rss
        took = time.monotonic() - started
    base = baseline_rss()
    end = rss[GATHERS]
    half = GATHERS // 2
    record(
        "memory",
        f"agent RSS after {GATHERS:,} execd gathers ({' + '.join(kinds)} target, host; "
        f"{GATHERS / took:,.0f} gathers/s)",
        f"{end / 2**20:.1f} MiB",
        "idle python3 with httpx, psutil, yaml imported",
        f"{base / 2**20:.1f} MiB",
        f"{end / base:.2f}x the baseline",
    )
    first, second = rss[half] - rss[WARMUP], end - rss[half]
    record(
        "memory",
        f"RSS growth in the second half (gathers {half:,} to {GATHERS:,})",
        f"{second / 2**10:+,.0f} KiB ({second / (GATHERS - half):+.1f} bytes/gather)",
        f"first half (gathers {WARMUP:,} to {half:,}: warm-up)",
        f"{first / 2**10:+,.0f} KiB",
        "flat second half = no leak",
    )


if __name__ == "__main__":
    main()
