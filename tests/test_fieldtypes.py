"""One line-protocol type per (measurement, field), the schema's, across a server's whole life.

Every line the agent writes (the stdout sink Telegraf reads, byte for byte) is recorded while each
server type lives through a fresh start (every counter 0), load, idle, a restart (counters back to
0), an outage and its return; each (measurement, field) must have exactly one wire type, and for a
documented field that type is the schema's. InfluxDB rejects a whole point when a field's type
changes, so one `0i` among floats loses every later point of the series.
"""

from __future__ import annotations

import asyncio

import pytest
from line_protocol_parser import parse_line

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.fieldtypes import Conformer
from telegraf_llm_input.lineprotocol import INT64_MAX, encode_metric
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.schema import ALL, lookup
from tests.fakes.life import KINDS, LIFE, T0, S, live

WIRE = {int: "int", float: "float", bool: "bool", str: "string"}


def wire_types(lines: list[str]) -> dict[tuple[str, str], set[str]]:
    seen: dict[tuple[str, str], set[str]] = {}
    for line in lines:
        point = parse_line(line)
        for key, value in point["fields"].items():
            seen.setdefault((point["measurement"], key), set()).add(WIRE[type(value)])
    return seen


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.type)
def test_every_field_keeps_one_type_the_schemas_through_a_servers_life(kind):
    lines = live(kind)
    servers = [parse_line(line) for line in lines if line.startswith("llm_server,")]
    assert len(servers) >= len(LIFE), lines  # every gather has its llm_server point, down or up
    assert {p["fields"]["up"] for p in servers} == {0, 1}
    for (measurement, field), types in sorted(wire_types(lines).items()):
        assert len(types) == 1, f"{measurement} {field}: written as {sorted(types)}"
        doc = lookup(measurement, field)
        if doc is not None:
            assert types == {doc.type}, f"{measurement} {field}: written as {types.pop()}, schema says {doc.type}"
        elif kind.type == "prometheus":  # a Prometheus value is a float64, whatever its text looks like
            assert types == {"float"}, (field, types)
        elif kind.type == "json":
            assert measurement == "llm_server" and field in {
                "latency_ms",
                "queue",
                "busy_seconds_total",
                "busy_seconds_per_s",
            }, field
    if kind.type == "json":
        assert wire_types(lines)[("llm_server", "queue")] == {"int"}  # `type: int` from the config
        assert wire_types(lines)[("llm_server", "latency_ms")] == {"float"}  # the default, also for 0


def test_auto_target_down_before_detection_says_server_type_unknown():
    lines = live(next(k for k in KINDS if k.type == "auto"))
    first = parse_line(next(line for line in lines if line.startswith("llm_server,")))
    assert first["fields"]["up"] == 0 and first["tags"]["server_type"] == "unknown"
    down_later = [p for p in map(parse_line, lines) if p["measurement"] == "llm_server" and p["fields"]["up"] == 0][1:]
    assert down_later and all(p["tags"]["server_type"] == "vllm" for p in down_later)


def test_every_documented_field_has_a_line_protocol_type():
    for m in ALL:
        for f in m.fields:
            assert f.type in ("float", "int", "bool", "string") or f.name == "*", (m.name, f.name)
            if f.kind == "counter" and f.unit in ("s", "J"):
                assert f.type == "float", (m.name, f.name)  # seconds and joules are fractional
            if f.kind == "counter" and f.unit in ("tokens", "requests", "count", "errors", "calls", "preemptions"):
                assert f.type == "int", (m.name, f.name)


@pytest.mark.parametrize("value,wire", [(0, "0.0"), (0.0, "0.0"), (3, "3.0"), (True, "1.0"), (0.022008, "0.022008")])
def test_a_float_field_is_a_float_whatever_the_value(value, wire):
    [m] = Conformer().conform([Metric("llm_server", {}, {"prompt_seconds_total": value}, 1)])
    assert encode_metric(m) == f"llm_server prompt_seconds_total={wire} 1"


@pytest.mark.parametrize("value,wire", [(0, "0i"), (0.0, "0i"), (1000.0, "1000i"), (INT64_MAX, f"{INT64_MAX}i")])
def test_an_int_field_is_an_int_whatever_the_value(value, wire):
    [m] = Conformer().conform([Metric("llm_server", {}, {"prompt_tokens_total": value}, 1)])
    assert encode_metric(m) == f"llm_server prompt_tokens_total={wire} 1"


@pytest.mark.parametrize("value", [INT64_MAX + 1, float(2**64), 1.5, -3, -3.0, float("nan"), float("inf"), "12"])
def test_a_value_that_does_not_fit_is_dropped_and_counted_never_retyped(value):
    warnings: list[str] = []
    conformer = Conformer(lambda msg, *args: warnings.append(msg % args))
    [m] = conformer.conform([Metric("llm_server", {}, {"prompt_tokens_total": value, "up": 1}, 1)])
    assert m.fields == {"up": 1} and conformer.dropped == 1
    conformer.conform([Metric("llm_server", {}, {"prompt_tokens_total": value}, 2)])
    assert conformer.dropped == 2 and len(warnings) == 1 and "prompt_tokens_total" in warnings[0]


def test_a_field_named_like_the_schemas_wildcard_keeps_its_own_type():
    """The schema's bare `*` (user-chosen json/prometheus names) vouches for no type: the value passes as it is."""
    [m] = Conformer().conform([Metric("llm_server", {}, {"*": 2, "up": 1}, 1)])
    assert m.fields == {"*": 2, "up": 1}


def test_values_of_the_right_type_pass_unchanged():
    metric = Metric("llm_server", {"model": "m"}, {"up": 1, "scrape_ms": 2.5, "prompt_tokens_total": 7}, 1)
    conformer = Conformer()
    [same] = conformer.conform([metric])
    assert same is metric and conformer.dropped == 0


def test_agent_counts_dropped_fields():
    class Bad:
        name = "bad"

        async def gather(self, ctx):
            return [Metric("llm_server", {}, {"up": 1, "requests_total": -4}, ctx.time_ns)]

        async def close(self):
            pass

    agent = Agent([Bad()], [], deadline_s=1.0)
    asyncio.run(agent.gather_once(T0))
    metrics = asyncio.run(agent.gather_once(T0 + S))
    [server] = [m for m in metrics if m.measurement == "llm_server"]
    assert "requests_total" not in server.fields
    [total] = [m for m in metrics if m.measurement == "llm_agent" and not m.tags]
    assert total.fields["fields_dropped"] == 1
