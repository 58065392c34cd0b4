"""Fan-out: wall time of one gather over 32 slow targets vs over 1 (the baseline).

Each target answers after DELAY_S (a loaded server, a slow link). Scraped one after another, 32 targets would take
32 times as long; the agent scrapes all targets concurrently on one shared HTTP client, so the ratio should stay
near 1. Run: python3 -m bench.fanout
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.pageserver import PageServer
from bench.report import record
from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv

DELAY_S = 0.25
TARGETS = 32
ROUNDS = 5
PAGE = """# HELP app_requests_total Requests served.
# TYPE app_requests_total counter
app_requests_total{code="200"} 1027
app_requests_total{code="500"} 3
# HELP app_inflight Requests in flight.
# TYPE app_inflight gauge
app_inflight 2
# HELP app_latency_seconds Request latency.
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le="0.1"} 800
app_latency_seconds_bucket{le="0.5"} 1000
app_latency_seconds_bucket{le="+Inf"} 1030
app_latency_seconds_sum 91.5
app_latency_seconds_count 1030
"""


def gather_wall_times(url: str, n_targets: int) -> tuple[float, float, int]:
    targets = [
        {"url": url, "type": "prometheus", "name": f"slow-{i}", "timeout": "5s", "process": {"enabled": False}}
        for i in range(n_targets)
    ]
    config = parse_config({"targets": targets, "host": {"enabled": False}, "gpu": {"enabled": False}})
    agent = Agent(build_sources(config, SourceEnv()), [], deadline_s=30.0)

    async def run() -> tuple[float, float, int]:
        walls, cpus = [], []
        up = 0
        try:
            await agent.gather_once()  # connections opened, first scrape done
            for _ in range(ROUNDS):
                t0, c0 = time.perf_counter(), time.process_time()
                metrics = await agent.gather_once()
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                up = len(
                    {m.tags.get("target") for m in metrics if m.measurement == "llm_server" and m.fields.get("up") == 1}
                )
        finally:
            await agent.close()
        return statistics.median(walls), statistics.median(cpus), up

    return asyncio.run(run())


def main() -> None:
    with PageServer({"/metrics": ("text/plain; version=0.0.4; charset=utf-8", PAGE)}, delay_s=DELAY_S) as server:
        one, _, up_one = gather_wall_times(server.url, 1)
        many, many_cpu, up_many = gather_wall_times(server.url, TARGETS)
    if up_one != 1 or up_many != TARGETS:
        raise SystemExit(f"targets not all up: {up_one}/1, {up_many}/{TARGETS}")
    record(
        "fan-out",
        f"gather wall time, {TARGETS} targets each answering after {DELAY_S * 1e3:.0f} ms",
        f"{many * 1e3:.0f} ms",
        "1 such target",
        f"{one * 1e3:.0f} ms",
        f"{many / one:.2f}x (one after another: {TARGETS}x)",
    )
    # What the extra wall time is: the agent's own CPU for 32 scrapes (on 2 busy cores), not waiting in line.
    print(
        f"agent CPU in the {TARGETS}-target gather: {many_cpu * 1e3:.0f} ms "
        f"({many_cpu / TARGETS * 1e3:.1f} ms per target); wall above the delay: {(many - DELAY_S) * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
