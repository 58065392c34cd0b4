"""A real llama-server's whole life, every line the agent writes: one type per field, every point stored.

Fresh start (every counter 0: llama-server says `prompt_seconds_total 0`), load, idle, restart
(counters back to 0), down, up. The lines go to stdout (what Telegraf reads) and through the
`influxdb_v1` output into a real InfluxDB 1.x, which rejects a whole point when a field changes
type: every gather's `llm_server` point must be there, none rejected.
"""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from line_protocol_parser import parse_line

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.processors import build_processors
from telegraf_llm_input.schema import lookup
from telegraf_llm_input.sinks import build_sinks
from telegraf_llm_input.sinks.stdout import StdoutSink
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv

pytestmark = pytest.mark.realserver

WIRE = {int: "int", float: "float", bool: "bool", str: "string"}
DB = "life"


def test_a_real_llama_servers_life_keeps_every_type_and_every_point(make_llama_server, influxdb, tmp_path):
    server = make_llama_server()
    influxdb.create_db(DB)
    config = parse_config(
        {
            "agent": {"state_dir": str(tmp_path / "state")},
            "targets": [{"url": server.url, "name": "tiny", "timeout": "2s", "process": {"enabled": False}}],
            "host": {"enabled": False},
            "gpu": {"enabled": False},
            "outputs": [{"type": "influxdb_v1", "url": influxdb.url, "database": DB, "flush_interval": "100ms"}],
        }
    )
    env = SourceEnv(state_dir=tmp_path / "state")
    out = io.BytesIO()
    [influx] = build_sinks(config)
    agent = Agent(
        build_sources(config, env), [StdoutSink(out), influx], deadline_s=5.0, processors=build_processors(config)
    )
    gathers = 0

    async def gather(phase: str):
        nonlocal gathers
        gathers += 1
        metrics = await agent.gather_once()
        [point] = [m for m in metrics if m.measurement == "llm_server" and "up" in m.fields]  # not its log's
        return point

    def load():
        for i in range(2):
            server.complete(f"life {i}: the weather in city {i}", 8)

    async def life():
        fresh = await gather("fresh")
        assert fresh.fields["up"] == 1 and fresh.fields["prompt_seconds_total"] == 0
        load()
        loaded = await gather("load")
        assert loaded.fields["generation_tokens_total"] > 0
        await gather("idle")
        server.restart()
        restarted = await gather("restart")
        assert restarted.fields["up"] == 1 and restarted.fields["generation_tokens_total"] == 0
        load()
        await gather("load again")
        server.stop()
        down = await gather("down")
        assert down.fields["up"] == 0
        server.start()
        up = await gather("up")
        assert up.fields["up"] == 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and influx.stats()["output_buffered_points"]:
            await asyncio.sleep(0.1)
        await agent.close()

    asyncio.run(life())
    lines = out.getvalue().decode().splitlines()
    types: dict[tuple[str, str], set[str]] = {}
    for line in lines:
        point = parse_line(line)
        for key, value in point["fields"].items():
            types.setdefault((point["measurement"], key), set()).add(WIRE[type(value)])
    for (measurement, field), seen in sorted(types.items()):
        doc = lookup(measurement, field)
        assert doc is not None, f"{measurement} {field}: not in the schema"
        assert seen == {doc.type}, f"{measurement} {field}: written as {sorted(seen)}, schema says {doc.type}"
    assert types[("llm_server", "prompt_seconds_total")] == {"float"}

    stats = influx.stats()
    assert stats["output_dropped_points"] == 0 and stats["output_buffered_points"] == 0, stats
    assert stats["output_written_points"] == len(lines)
    series = influxdb.query('SELECT count("up") FROM "llm_server"', db=DB)["results"][0]["series"][0]
    assert series["values"][0][1] == gathers == 7
    stored = influxdb.query('SELECT count("gathers") FROM "llm_agent"', db=DB)["results"][0]["series"][0]
    assert stored["values"][0][1] == gathers
