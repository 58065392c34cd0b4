"""Process lookup: CPU per gather of the `llm_process` source vs one full socket scan (the baseline).

The target is a page server in its own process, found (as by default) as whoever listens on the target's port; a
second target has nothing listening (a server that is down). Before the pid was cached, every gather did at
least one full scan (`psutil.net_connections`: every socket of the machine matched to every process's file
descriptors) plus a walk of all processes for the children; a down target did the scan and then asked every
process. Now a gather re-reads the live pid (`oneshot()`) and one socket table, and a down target only the table.
Run: python3 -m bench.process
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import psutil

from bench.pageserver import PageServer
from bench.report import fmt_ms, record
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.sources.base import GatherContext
from telegraf_llm_input.sources.process import ProcessSource
from tests.support.procs import free_port

GATHERS = 300


def source_cpu_per_gather(url: str) -> tuple[float, int]:
    config = parse_config({"targets": [{"url": url, "name": "t"}], "gpu": {"enabled": False}})
    source = ProcessSource(config.targets[0], None)

    async def run() -> tuple[float, int]:
        costs = []
        up = 0
        for i in range(GATHERS + 3):
            t0 = time.process_time()
            [metric] = await source.gather(GatherContext(time_ns=time.time_ns(), deadline_s=10.0))
            if i >= 3:  # the first gathers find it
                costs.append(time.process_time() - t0)
            up = metric.fields["up"]
        return statistics.median(costs), up

    return asyncio.run(run())


def full_scan_cost() -> float:
    costs = []
    for _ in range(30):
        t0 = time.process_time()
        psutil.net_connections("tcp")
        costs.append(time.process_time() - t0)
    return statistics.median(costs)


def main() -> None:
    with PageServer({"/health": ("text/plain", "ok")}) as server:
        live, up = source_cpu_per_gather(server.url)
        down, up_down = source_cpu_per_gather(f"http://127.0.0.1:{free_port()}")
        base = full_scan_cost()
    if (up, up_down) != (1, 0):
        raise SystemExit(f"expected the live target up and the other down, got up={up}, {up_down}")
    n_procs = len(psutil.pids())
    n_socks = sum(len(open(t).readlines()) - 1 for t in ("/proc/net/tcp", "/proc/net/tcp6") if os.path.exists(t))
    record(
        "process lookup",
        "`llm_process` CPU per gather, pid alive (found by its port)",
        fmt_ms(live),
        f"one full socket scan, psutil.net_connections ({n_procs} processes, {n_socks} TCP sockets)",
        fmt_ms(base),
        f"{live / base:.3f}x the baseline's CPU",
    )
    record(
        "process lookup",
        "`llm_process` CPU per gather, nothing listening (target down)",
        fmt_ms(down),
        "the same full socket scan",
        fmt_ms(base),
        f"{down / base:.3f}x the baseline's CPU",
    )


if __name__ == "__main__":
    main()
