"""No `targets:` at all: the agent finds the fakes on their ports and monitors them."""

import asyncio
import logging

from telegraf_llm_input.config import parse_config
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import GatherContext, SourceEnv
from tests.fakes.llm import Snap, fake_llamacpp, fake_ollama, fake_openai, fake_vllm, llamacpp_metrics, vllm_page
from tests.fakes.llm_more import fake_tgi, tgi_page
from tests.fakes.server import FakeServer, Reply
from tests.support.procs import free_port


def test_discovery_finds_each_fake_with_its_type(caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    fakes = {"vllm": fake_vllm(vllm_page({"m": Snap(prompt=5)})),
             "llamacpp": fake_llamacpp(llamacpp_metrics(1, 2, 3, 4)),
             "ollama": fake_ollama([]),
             "tgi": fake_tgi([tgi_page(1, {}, 0, 0, 1, 1, ([1.0], [1, 1], 0.5))]),
             "openai": fake_openai(["lmstudio-model"])}
    stranger = FakeServer({"/": Reply("hello")})  # answers HTTP, but no model server
    closed = free_port()
    for f in [*fakes.values(), stranger]:
        f.start()
    try:
        ports = [f.port for f in fakes.values()] + [stranger.port, closed]
        config = parse_config({"discovery": {"ports": ports, "timeout": "1s"}, "host": {"enabled": False}})

        async def run():
            sources = build_sources(config, SourceEnv())
            out = list(await sources[0].gather(GatherContext(0, 5.0)))
            for s in sources:
                await s.close()
            return out
        metrics = asyncio.run(run())
    finally:
        for f in [*fakes.values(), stranger]:
            f.stop()
    found = {m.tags["target"]: m.tags["server_type"] for m in metrics if m.measurement == "llm_server"}
    assert found == {f.url: kind for kind, f in fakes.items()}
    assert all(m.fields["up"] == 1 for m in metrics if m.measurement == "llm_server")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("discovery")]
    assert len(lines) == 1 and f"vllm at {fakes['vllm'].url}" in lines[0] and "ollama at" in lines[0]


def test_discovery_off_or_explicit_empty_targets_build_nothing():
    for data in ({"discovery": {"enabled": False}}, {"targets": []}):
        config = parse_config({**data, "host": {"enabled": False}})
        assert build_sources(config, SourceEnv()) == []


def test_a_server_started_later_is_found_on_rescan(caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    port = free_port()
    config = parse_config({"discovery": {"ports": [port], "timeout": "1s", "rescan": "0s"},
                           "host": {"enabled": False}})

    async def run():
        [source] = build_sources(config, SourceEnv())
        before = list(await source.gather(GatherContext(0, 5.0)))
        later = FakeServer({"/api/version": Reply({"version": "0.6.5"}), "/api/ps": Reply({"models": []})},
                           port=port).start()
        try:
            after = list(await source.gather(GatherContext(10, 5.0)))
        finally:
            later.stop()
            await source.close()
        return before, after
    before, after = asyncio.run(run())
    assert before == []
    assert [(m.tags["server_type"], m.fields["up"]) for m in after if m.measurement == "llm_server"] == [("ollama", 1)]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("discovery")]
    assert "no model server" in lines[0] and "ollama at" in lines[1]
