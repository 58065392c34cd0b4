"""The whole agent against an Ollama fake that writes its server log as Ollama does: exact against the fake's record."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import pytest

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.apis.ollama import PROBE_MARK
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.probe.runner import ProbeRunner
from telegraf_llm_input.serverlogs import ollama as ollama_format
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv
from tests.fakes.serverlogs import LoggingOllama, OllamaLog

MODEL = {
    "name": "qwen2.5:7b",
    "model": "qwen2.5:7b",
    "size": 6_000_000_000,
    "size_vram": 4_500_000_000,
    "expires_at": "2099-01-01T00:00:00.123456789Z",
}


def pct(values, p):
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


@pytest.fixture
def ollama(tmp_path):
    log = OllamaLog(tmp_path / "server.log")
    log.path.write_text("")
    with LoggingOllama(log, [MODEL]) as fake:
        yield fake


def agent_for(fake: LoggingOllama, state) -> Agent:
    config = parse_config(
        {
            "agent": {"state_dir": str(state)},
            "targets": [{"url": fake.url, "type": "ollama", "name": "ol", "log": str(fake.log.path)}],
            "host": {"enabled": False},
            "gpu": {"enabled": False},
        }
    )
    return Agent(build_sources(config, SourceEnv(state_dir=state)), [], deadline_s=5.0)


def test_requests_latency_errors_and_loads_exact(ollama, tmp_path):
    agent = agent_for(ollama, tmp_path / "state")

    async def run():
        t0 = time.time_ns()
        await agent.gather_once(t0)
        ollama.log.record.clear()
        async with httpx.AsyncClient(base_url=ollama.url) as client:
            for _ in range(23):
                await client.post("/api/chat", json={"model": "qwen2.5:7b", "messages": []})
            for _ in range(3):
                await client.post("/api/generate", json={"model": "qwen2.5:7b", "prompt": "x"})
            for _ in range(5):
                await client.post("/api/embed", json={"model": "all-minilm", "input": "x"})
            await client.post("/api/show", json={"model": "nope"})
        ollama.load(2.51)
        ollama.load(7.25)
        t1 = time.time_ns()
        points = await agent.gather_once(t1)
        await agent.close()
        return points, (t1 - t0) / 1e9

    points, seconds = asyncio.run(run())
    logged = [m for m in points if m.measurement == "llm_server" and "up" not in m.fields]
    by_api = {m.tags.get("api"): m.fields for m in logged}
    record = ollama.log.record
    gen = [r for r in record if r.path in ("/api/chat", "/api/generate")]
    emb = [r for r in record if r.path == "/api/embed"]
    ms = [r.latency_ns / 1e6 for r in gen]
    g = by_api["generate"]
    assert round(g["requests_per_s"] * seconds) == len(gen) == 26
    assert g["e2e_p95_ms"] == pytest.approx(pct(ms, 95), rel=1e-9)
    assert g["error_ratio"] == sum(r.status >= 500 for r in gen) / len(gen) == 3 / 26
    assert g["client_error_ratio"] == 0.0  # /api/show's 404 is no inference request
    assert round(by_api["embed"]["requests_per_s"] * seconds) == len(emb) == 5
    loads = [r.load_s for r in record if r.load_s is not None]
    assert round(by_api[None]["model_loads_per_s"] * seconds) == len(loads) == 2
    assert by_api[None]["model_load_seconds"] == loads[-1]
    # the agent's own scrapes were logged (as Ollama does) and counted nowhere
    assert any(r.path == "/api/ps" for r in record)
    for fields in by_api.values():
        assert set(fields) <= set(ollama_format.FIELDS)
    [model] = [m for m in points if m.measurement == "llm_model_loaded"]
    assert model.tags["model"] == "qwen2.5:7b" and model.fields["gpu_offload_ratio"] == 0.75


def test_a_probe_sent_by_another_process_is_not_user_traffic(ollama, tmp_path):
    """`top` beside the agent probes from its own process: the agent's ledger never saw that request, and its line
    in Ollama's log counted as a user's. The probe's query mark (logged by gin with the path) says whose it is."""
    ollama.models = [{**MODEL, "expires_at": "2318-01-01T00:00:00Z"}]  # kept forever: probed at any time
    agent = agent_for(ollama, tmp_path / "state")
    top_target = parse_config(
        {"targets": [{"url": ollama.url, "type": "ollama", "name": "ol", "probe": {"enabled": True}}]}
    ).targets[0]

    async def run():
        t0 = time.time_ns()
        await agent.gather_once(t0)
        top_runner = ProbeRunner(top_target)  # top's own runner: no ledger the agent reads
        try:
            await top_runner.run_once()
        finally:
            await top_runner.aclose()
        async with httpx.AsyncClient(base_url=ollama.url) as client:
            await client.post("/api/chat", json={"model": "qwen2.5:7b", "messages": []})  # a user's
        t1 = time.time_ns()
        points = await agent.gather_once(t1)
        await agent.close()
        return points, (t1 - t0) / 1e9

    points, seconds = asyncio.run(run())
    chats = [r.path for r in ollama.log.record if r.path.startswith("/api/chat")]
    assert chats == [f"/api/chat?{PROBE_MARK}", "/api/chat"]  # both in the log, as Ollama writes them
    [gen] = [m for m in points if m.measurement == "llm_server" and m.tags.get("api") == "generate"]
    assert round(gen.fields["requests_per_s"] * seconds) == 1
