"""Gather cost: CPU time of one full gather vs prometheus_client parsing the vLLM page alone (the baseline).

A full gather here: a vLLM target (a real-size V1 page), a llama.cpp target (/metrics, /slots, /props, /health),
the host source and 8 GPUs through a fake NVML (tests/fakes/nvml.py: our Python side only; a real driver adds
its own time). The pages come from another process, so only the agent's CPU is counted: this process's CPU time
(every thread) per gather, median of many.
Run: python3 -m bench.gather
"""

from __future__ import annotations

import asyncio
import statistics
import time

from prometheus_client.parser import text_string_to_metric_families

from bench.pages import VLLM_PAGE, llamacpp_pages, vllm_pages
from bench.pageserver import PageServer
from bench.report import fmt_ms, record
from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.processors import build_processors
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv

GATHERS = 200


def fake_gpus():
    """Install the fake 8-GPU NVML when this checkout has it; returns (undo, label)."""
    try:
        import pytest

        from tests.fakes.nvml import FakeNvml
    except ImportError:
        return (lambda: None), "no GPUs (tests/fakes/nvml.py absent)"
    mp = pytest.MonkeyPatch()
    fake = FakeNvml()
    fake.install(mp)
    return mp.undo, f"{len(fake.gpus)} fake GPUs"


def agent_cpu_per_gather(llama_url: str, vllm_url: str) -> tuple[float, int, str]:
    undo, gpus = fake_gpus()
    try:
        config = parse_config(
            {
                "targets": [
                    {"url": llama_url, "type": "llamacpp", "name": "llama", "process": {"enabled": False}},
                    {"url": vllm_url, "type": "vllm", "name": "vllm", "process": {"enabled": False}},
                ],
                "gpu": {"enabled": "auto"},
            }
        )
        env = SourceEnv()
        agent = Agent(build_sources(config, env), [], deadline_s=10.0, processors=build_processors(config))

        async def run() -> tuple[float, int]:
            costs = []
            n = 0
            try:
                for _ in range(5):
                    await agent.gather_once()
                for _ in range(GATHERS):
                    t0 = time.process_time()
                    n = len(await agent.gather_once())
                    costs.append(time.process_time() - t0)
            finally:
                await agent.close()
            return statistics.median(costs), n

        cost, n = asyncio.run(run())
        return cost, n, gpus
    finally:
        undo()


def prometheus_client_parse_cost() -> float:
    costs = []
    for _ in range(GATHERS):
        t0 = time.process_time()
        for family in text_string_to_metric_families(VLLM_PAGE):
            for _sample in family.samples:
                pass
        costs.append(time.process_time() - t0)
    return statistics.median(costs)


def main() -> None:
    with PageServer(llamacpp_pages()) as llama, PageServer(vllm_pages()) as vllm:
        ours, n_metrics, gpus = agent_cpu_per_gather(llama.url, vllm.url)
    base = prometheus_client_parse_cost()
    record(
        "gather cost",
        f"CPU per full gather (vLLM + llama.cpp targets, host, {gpus}; {n_metrics} metrics)",
        fmt_ms(ours),
        f"prometheus_client parsing the vLLM page alone ({VLLM_PAGE.count(chr(10))} lines)",
        fmt_ms(base),
        f"{ours / base:.2f}x the baseline's CPU",
    )


if __name__ == "__main__":
    main()
