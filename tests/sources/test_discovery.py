"""No `targets:` at all: the agent finds the fakes on their ports and monitors them."""

import asyncio
import logging

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv
from tests.fakes.llm import Snap, fake_llamacpp, fake_ollama, fake_openai, fake_vllm, llamacpp_metrics, vllm_page
from tests.fakes.llm_more import fake_tgi, tgi_page
from tests.fakes.server import FakeServer, Reply
from tests.support.procs import free_port


def test_discovery_finds_each_fake_with_its_type(caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    fakes = {
        "vllm": fake_vllm(vllm_page({"m": Snap(prompt=5)})),
        "llamacpp": fake_llamacpp(llamacpp_metrics(1, 2, 3, 4)),
        "ollama": fake_ollama([]),
        "tgi": fake_tgi([tgi_page(1, {}, 0, 0, 1, 1, ([1.0], [1, 1], 0.5))]),
        "openai": fake_openai(["lmstudio-model"]),
    }
    stranger = FakeServer({"/": Reply("hello")})  # answers HTTP, but no model server
    closed = free_port()
    for f in [*fakes.values(), stranger]:
        f.start()
    try:
        ports = [f.port for f in fakes.values()] + [stranger.port, closed]
        config = parse_config(
            {"discovery": {"ports": ports, "timeout": "1s"}, "host": {"enabled": False}, "gpu": {"enabled": False}}
        )

        async def run():
            agent = Agent(build_sources(config, SourceEnv()), [], deadline_s=5.0)
            try:
                return await agent.gather_once(0)
            finally:
                await agent.close()

        metrics = asyncio.run(run())
    finally:
        for f in [*fakes.values(), stranger]:
            f.stop()
    # (a server's own log, where one is found on this machine, gives points without `up`: sources/serverlog.py)
    scraped = [m for m in metrics if m.measurement == "llm_server" and "up" in m.fields]
    found = {m.tags["target"]: m.tags["server_type"] for m in scraped}
    assert found == {f.url: kind for kind, f in fakes.items()}
    assert all(m.fields["up"] == 1 for m in scraped)
    # each discovered server is a source of its own: its own llm_agent line, beside discovery's
    sources = {m.tags["source"] for m in metrics if m.measurement == "llm_agent" and "source" in m.tags}
    logs = {"serverlog", *(f"serverlog:{f.url}" for kind, f in fakes.items() if kind in ("ollama", "llamacpp"))}
    assert sources == {"discovery", "process:discovered", *logs, *(f"server:{f.url}" for f in fakes.values())}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("discovery")]
    assert len(lines) == 1 and f"vllm at {fakes['vllm'].url}" in lines[0] and "ollama at" in lines[0]


def test_discovery_off_or_explicit_empty_targets_build_nothing():
    for data in ({"discovery": {"enabled": False}}, {"targets": []}):
        config = parse_config({**data, "host": {"enabled": False}, "gpu": {"enabled": False}})
        assert build_sources(config, SourceEnv()) == []


def test_a_server_started_later_is_found_on_rescan(caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    port = free_port()
    config = parse_config(
        {
            "discovery": {"ports": [port], "timeout": "1s", "rescan": "100ms"},
            "host": {"enabled": False},
            "gpu": {"enabled": False},
        }
    )

    async def run():
        agent = Agent(build_sources(config, SourceEnv()), [], deadline_s=5.0)
        before = await agent.gather_once(0)
        later = FakeServer(
            {"/api/version": Reply({"version": "0.6.5"}), "/api/ps": Reply({"models": []})}, port=port
        ).start()
        await asyncio.sleep(0.15)  # past `rescan`
        try:
            after = await agent.gather_once(10)
        finally:
            later.stop()
            await agent.close()
        return before, after

    before, after = asyncio.run(run())
    assert [m for m in before if m.measurement == "llm_server"] == []
    assert [(m.tags["server_type"], m.fields["up"]) for m in after if m.measurement == "llm_server"] == [("ollama", 1)]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("discovery")]
    assert "no model server" in lines[0] and "ollama at" in lines[1]


def test_a_discovered_server_that_goes_away_reports_up_0_under_its_own_source():
    # no kept-alive connection outlives the stop
    fake = FakeServer({"/metrics": Reply(vllm_page({"m": Snap(prompt=5)}), headers={"Connection": "close"})}).start()
    config = parse_config(
        {"discovery": {"ports": [fake.port], "timeout": "1s"}, "host": {"enabled": False}, "gpu": {"enabled": False}}
    )

    async def run():
        agent = Agent(build_sources(config, SourceEnv()), [], deadline_s=3.0)
        try:
            first = await agent.gather_once(0)
            fake.stop()
            return first, await agent.gather_once(10), agent.problems()
        finally:
            await agent.close()

    first, down, problems = asyncio.run(run())
    [up] = [m for m in first if m.measurement == "llm_server"]
    [gone] = [m for m in down if m.measurement == "llm_server"]
    assert (up.fields["up"], gone.fields["up"], gone.tags["server_type"]) == (1, 0, "vllm")
    [own] = [m for m in down if m.measurement == "llm_agent" and m.tags.get("source") == f"server:{fake.url}"]
    assert own.fields["metrics"] == 1 and own.fields["ok"] == 1  # down is a point, not a source failure
    assert "discovery" not in problems


def test_a_discovered_server_gets_its_process_followed():
    """No `targets:` (a fresh machine): the process of each discovered server is monitored too."""
    import subprocess
    import sys
    from pathlib import Path

    from telegraf_llm_input.agent import Agent

    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.streaming", "0.01", "0.01", "3"], stdout=subprocess.PIPE, cwd=root
    )
    try:
        port = int(child.stdout.readline())
        config = parse_config(
            {"discovery": {"ports": [port], "timeout": "1s"}, "host": {"enabled": False}, "gpu": {"enabled": False}}
        )

        async def run():
            agent = Agent(build_sources(config, SourceEnv()), [], deadline_s=5.0)
            await agent.gather_once()  # discovery finds the server (the process source may run first)
            alive = await agent.gather_once()
            child.kill()
            child.wait()
            gone = await agent.gather_once()
            await agent.close()
            return alive, gone

        alive, gone = asyncio.run(run())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    url = f"http://127.0.0.1:{port}"
    [proc] = [m for m in alive if m.measurement == "llm_process"]
    assert proc.tags["target"] == url and proc.tags["server_type"] == "openai"
    assert proc.fields["up"] == 1 and proc.fields["pid"] == child.pid and proc.fields["exposed"] == 0
    assert proc.fields["rss_bytes"] > 0
    [after] = [m for m in gone if m.measurement == "llm_process"]
    assert after.fields["up"] == 0
