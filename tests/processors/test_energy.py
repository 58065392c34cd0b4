"""Energy per token: the math by hand, the processor on synthetic gathers, and the agent end to end."""

from __future__ import annotations

import asyncio

import pytest

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.processors import build_processors
from telegraf_llm_input.processors.energy import EnergyPerToken, energy_per_token
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import GatherContext, SourceEnv
from tests.fakes.nvml import FakeNvml

T = 1_700_000_000_000_000_000


def test_math_by_hand():
    # two GPUs: 3000 J + 1000 J over 500 tokens = 8 J/token
    assert energy_per_token(1000, {"0": 50_000.0, "1": 20_000.0}, 1500, {"0": 53_000.0, "1": 21_000.0}) == 8.0
    assert energy_per_token(1000, {"0": 10.0}, 1000, {"0": 99.0}) is None  # no tokens generated
    assert energy_per_token(1000, {"0": 10.0}, 10, {"0": 99.0}) is None  # server restarted: tokens reset
    assert energy_per_token(0, {"0": 500.0}, 10, {"0": 20.0}) is None  # driver reloaded: energy reset
    assert energy_per_token(0, {"0": 5.0}, 10, {"0": 20.0, "1": 3.0}) is None  # GPU set changed
    assert energy_per_token(0, {}, 10, {}) is None


def gpu(index: int, joules: float) -> Metric:
    return Metric(
        "llm_gpu", {"index": str(index), "uuid": f"GPU-{index}"}, {"energy_total_j": joules, "power_draw_w": 300.0}, T
    )


def server(target: str, tokens: float, model: str = "m") -> Metric:
    return Metric(
        "llm_server",
        {"target": target, "server_type": "vllm", "model": model},
        {"generation_tokens_total": tokens, "requests_running": 2},
        T,
    )


def process(target: str, gpus: str) -> Metric:
    return Metric("llm_process", {"target": target, "server_type": "vllm"}, {"up": 1, "gpu_indices": gpus}, T)


def field_of(metrics, target, name="energy_j_per_token"):
    values = [m.fields.get(name) for m in metrics if m.measurement == "llm_server" and m.tags["target"] == target]
    return values


def test_processor_uses_configured_gpus_and_process_gpus():
    p = EnergyPerToken({"a": [0, 1]})
    first = p.process(
        [gpu(0, 1000.0), gpu(1, 2000.0), gpu(2, 50.0), server("a", 100), server("b", 10), process("b", "2")]
    )
    assert field_of(first, "a") == [None] and field_of(first, "b") == [None]  # no interval yet
    second = p.process(
        [gpu(0, 1600.0), gpu(1, 2400.0), gpu(2, 250.0), server("a", 300), server("b", 60), process("b", "2")]
    )
    assert field_of(second, "a") == [pytest.approx(1000.0 / 200)]
    assert field_of(second, "b") == [pytest.approx(200.0 / 50)]
    other = [m for m in second if m.measurement != "llm_server"]
    assert all("energy_j_per_token" not in m.fields for m in other)
    assert [m.fields["requests_running"] for m in second if m.measurement == "llm_server"] == [2, 2]


def test_no_tokens_no_field_and_reset_safe():
    p = EnergyPerToken({"a": [0]})
    p.process([gpu(0, 100.0), server("a", 500)])
    idle = p.process([gpu(0, 400.0), server("a", 500)])
    assert field_of(idle, "a") == [None]
    restarted = p.process([gpu(0, 700.0), server("a", 20)])  # counter reset: no wrong value
    assert field_of(restarted, "a") == [None]
    after = p.process([gpu(0, 1000.0), server("a", 120)])
    assert field_of(after, "a") == [pytest.approx(3.0)]


def test_gaps_are_not_spanned():
    p = EnergyPerToken()
    p.process([gpu(0, 100.0), server("a", 0), process("a", "0")])
    p.process([server("a", 50)])  # GPU reading missing this gather (lost, or too slow)
    back = p.process([gpu(0, 900.0), server("a", 100), process("a", "0")])
    assert field_of(back, "a") == [None]
    again = p.process([gpu(0, 1000.0), server("a", 150), process("a", "0")])
    assert field_of(again, "a") == [pytest.approx(2.0)]


def test_several_models_on_one_target_share_the_energy():
    p = EnergyPerToken({"ollama": [0]})
    p.process([gpu(0, 0.0), server("ollama", 100, "qwen"), server("ollama", 100, "llama")])
    out = p.process([gpu(0, 600.0), server("ollama", 200, "qwen"), server("ollama", 300, "llama")])
    assert field_of(out, "ollama") == [pytest.approx(2.0), pytest.approx(2.0)]


def test_without_gpus_nothing_changes():
    p = EnergyPerToken()
    batch = [server("a", 1), Metric("llm_host", {}, {"cpu_percent": 3.0}, T)]
    assert p.process(batch) == batch and p.process([server("a", 100)]) == [server("a", 100)]


class TokenSource:
    """Stands in for the servers' source: one vLLM target whose token counter grows 400 per gather."""

    name = "server:vllm-a"

    def __init__(self):
        self.tokens = 10_000

    async def gather(self, ctx: GatherContext):
        self.tokens += 400
        return [
            Metric(
                "llm_server",
                {"target": "vllm-a", "server_type": "vllm", "model": "vibethinker-1.5b"},
                {"generation_tokens_total": self.tokens},
                ctx.time_ns,
            )
        ]

    async def close(self):
        return None


def test_agent_end_to_end_with_fake_gpus(monkeypatch):
    fake = FakeNvml().install(monkeypatch)
    config = parse_config(
        {"targets": [{"url": "http://127.0.0.1:9", "name": "vllm-a", "gpus": [2, 3]}], "host": {"enabled": False}}
    )
    env = SourceEnv()
    # TokenSource stands in for the server source; the GPU source is the real one over the fake NVML.
    gpu_sources = [s for s in build_sources(config, env) if s.name == "gpu"]
    agent = Agent([*gpu_sources, TokenSource()], [], deadline_s=10.0, processors=build_processors(config))

    async def run():
        first = await agent.gather_once(T)
        fake.advance(10.0)  # each H100 draws 512.345 W for 10 s
        second = await agent.gather_once(T + 10**10)
        return first, second

    first, second = asyncio.run(run())
    assert field_of(first, "vllm-a") == [None]
    assert field_of(second, "vllm-a") == [pytest.approx(2 * 512.345 * 10 / 400)]
