"""Gather cost: CPU time of one full gather vs prometheus_client parsing the vLLM page alone (the baseline).

A full gather here: a vLLM target (a real-size V1 page), a llama.cpp target (/metrics, /slots, /props, /health),
the host source and 8 GPUs through a fake NVML (tests/fakes/nvml.py: our Python side only; a real driver adds
its own time). The pages come from another process, so only the agent's CPU is counted: this process's CPU time
(every thread) per gather, median of many. Gathers and baseline parses take turns, one of each per round, so a
machine that gets faster or slower during the run (a shared VM does) moves both figures alike.
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


def prometheus_client_parse() -> float:
    """CPU seconds of one baseline parse: every sample of the vLLM page through prometheus_client."""
    t0 = time.process_time()
    for family in text_string_to_metric_families(VLLM_PAGE):
        for _sample in family.samples:
            pass
    return time.process_time() - t0


def agent_cpu_per_gather(llama_url: str, vllm_url: str) -> tuple[float, float, int, str]:
    """(our CPU per gather, the baseline's per parse, metrics per gather, GPUs), medians over rounds."""
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

        async def run() -> tuple[float, float, int]:
            costs, bases = [], []
            n = 0
            try:
                for _ in range(5):
                    await agent.gather_once()
                    prometheus_client_parse()
                for _ in range(GATHERS):
                    t0 = time.process_time()
                    n = len(await agent.gather_once())
                    costs.append(time.process_time() - t0)
                    bases.append(prometheus_client_parse())
            finally:
                await agent.close()
            return statistics.median(costs), statistics.median(bases), n

        cost, base, n = asyncio.run(run())
        return cost, base, n, gpus
    finally:
        undo()


def main() -> None:
    with PageServer(llamacpp_pages()) as llama, PageServer(vllm_pages()) as vllm:
        ours, base, n_metrics, gpus = agent_cpu_per_gather(llama.url, vllm.url)
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
