"""One line-protocol type per (measurement, field), the schema's, across a server's whole life.

Every line the agent writes (the stdout sink Telegraf reads, byte for byte) is recorded while each
server type lives through a fresh start (every counter 0), load, idle, a restart (counters back to
0), an outage and its return; each (measurement, field) must have exactly one wire type, and for a
documented field that type is the schema's. InfluxDB rejects a whole point when a field's type
changes, so one `0i` among floats loses every later point of the series.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Callable

import pytest
from line_protocol_parser import parse_line

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.fieldtypes import Conformer
from telegraf_llm_input.lineprotocol import INT64_MAX, encode_metric
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.schema import ALL, lookup
from telegraf_llm_input.sinks.stdout import StdoutSink
from telegraf_llm_input.sources import build_processors, build_sources
from telegraf_llm_input.sources.base import SourceEnv
from tests.fakes.llm import Snap, VLLM_HIST, llamacpp_metrics, llamacpp_props, llamacpp_slots, vllm_page
from tests.fakes.llm_more import TGI_INFO, sglang_page, tgi_page
from tests.fakes.server import FakeServer, Reply

S = 1_000_000_000
T0 = 1_700_000_000 * S
M = "Qwen/Qwen2.5-7B-Instruct"
B = [0.1, 1.0]

WIRE = {int: "int", float: "float", bool: "bool", str: "string"}
LIFE: tuple[tuple[str, float | None], ...] = (
    ("fresh", 0.0), ("load", 1.0), ("more load", 2.5), ("idle", 2.5), ("restart", 0.0), ("load again", 0.7),
    ("down", None), ("up", 1.3),
)
"""(phase, scale of every counter; None: the server is gone)."""


def hist(k: float) -> tuple[list[float], list[float], float]:
    n = round(10 * k)
    return B, [round(4 * k), n, n], 0.35 * n


def vllm(k: float) -> dict:
    snap = Snap(running=round(3 * k), waiting=round(k), kv=0.25 * k, prompt=round(1000 * k),
                generation=round(5000 * k), finished={"stop": round(9 * k), "length": round(k)},
                preemptions=round(2 * k), hists={p: hist(k) for p in VLLM_HIST})
    return {"/metrics": Reply(vllm_page({M: snap}, engines=2))}


def sglang(k: float) -> dict:
    page = sglang_page(M, 2, round(2 * k), [0.1 * k, 0.3 * k], round(900 * k), round(4000 * k), round(8 * k), hist(k))
    return {"/metrics": Reply(page), "/get_server_info": Reply({"model_path": M, "tp_size": 2, "version": "0.4.9"})}


def tgi(k: float) -> dict:
    page = tgi_page(round(40 * k), {"validation": round(2 * k)} if k else {}, round(k), round(3 * k),
                    round(7000 * k), round(9000 * k), hist(k))
    return {"/metrics": Reply(page), "/info": Reply(TGI_INFO)}


def llamacpp(k: float) -> dict:
    # a fresh llama-server says `prompt_seconds_total 0`, later `0.022008`: the field is a float from the start
    page = llamacpp_metrics(round(300 * k), round(700 * k), 0.022008 * k, 1.5 * k, processing=round(k),
                            decode_calls=round(90 * k))
    return {"/health": Reply({"status": "ok"}), "/metrics": Reply(page), "/slots": Reply(llamacpp_slots(round(k) % 3, 2)),
            "/props": Reply(llamacpp_props(2)), "/v1/models": Reply({"object": "list", "data": [{"id": "qwen"}]})}


def ollama(k: float) -> dict:
    models = [{"name": "qwen2.5:1.5b", "model": "qwen2.5:1.5b", "size": round(2e9 * (1 + k)),
               "size_vram": round(1.5e9 * (1 + k)), "digest": "abc", "details": {},
               "expires_at": "2100-01-01T00:00:00Z", "context_length": 8192}] if k else []
    return {"/api/version": Reply({"version": "0.6.5"}), "/api/ps": Reply({"models": models}),
            "/": Reply("Ollama is running")}


def openai(k: float) -> dict:
    return {"/v1/models": Reply({"object": "list", "data": [{"id": "qwen", "object": "model"}]})}


def json_doc(k: float) -> dict:
    return {"/metrics": Reply({"latency_ms": 800 * k, "tokens": round(1000 * k), "busy_seconds": 3.0 * k,
                               "queue": round(2 * k)})}


JSON_FIELDS = {"latency_ms": {"path": "latency_ms"}, "queue": {"path": "queue", "type": "int"},
               "generation_tokens_total": {"path": "tokens", "kind": "counter", "type": "int"},
               "busy_seconds_total": {"path": "busy_seconds", "kind": "counter"}}


def prometheus(k: float) -> dict:
    lines = ["# TYPE app_hits_total counter", f'app_hits_total{{path="/a"}} {round(100 * k)}',
             "# TYPE app_busy_seconds_total counter", f"app_busy_seconds_total {0.5 * k!r}",
             "# TYPE app_inflight gauge", f"app_inflight {round(3 * k)}",
             "# TYPE app_latency_seconds histogram",
             *(f'app_latency_seconds_bucket{{le="{le}"}} {c}' for le, c in zip(["0.1", "1", "+Inf"], hist(k)[1])),
             f"app_latency_seconds_count {hist(k)[1][-1]}", f"app_latency_seconds_sum {hist(k)[2]}"]
    return {"/metrics": Reply("\n".join(lines) + "\n")}


@dataclass(frozen=True)
class Kind:
    type: str
    routes: Callable[[float], dict]
    extra: tuple = ()

    def target(self, url: str) -> dict:
        out = {"url": url, "name": self.type, "type": self.type, "timeout": "1s", "process": {"enabled": False}}
        out.update(dict(self.extra))
        return out


KINDS = [Kind("vllm", vllm), Kind("sglang", sglang), Kind("tgi", tgi), Kind("llamacpp", llamacpp),
         Kind("ollama", ollama), Kind("openai", openai), Kind("json", json_doc, (("json_fields", JSON_FIELDS),)),
         Kind("prometheus", prometheus, (("measurement", "llm_server"),)),
         Kind("auto", vllm)]


def wire_types(lines: list[str]) -> dict[tuple[str, str], set[str]]:
    seen: dict[tuple[str, str], set[str]] = {}
    for line in lines:
        point = parse_line(line)
        for key, value in point["fields"].items():
            seen.setdefault((point["measurement"], key), set()).add(WIRE[type(value)])
    return seen


def live(kind: Kind) -> list[str]:
    """Every line the agent writes while a server of this kind lives its whole life."""
    out = io.BytesIO()
    fake = FakeServer({}).start()
    port = fake.port
    config = parse_config({"targets": [kind.target(fake.url)], "host": {"enabled": False},
                           "gpu": {"enabled": False}})
    env = SourceEnv()
    agent = Agent(build_sources(config, env), [StdoutSink(out)], deadline_s=3.0,
                  processors=build_processors(config, env))
    phases = LIFE if kind.type != "auto" else (("down before detection", None), *LIFE)

    async def run():
        nonlocal fake
        for i, (_, k) in enumerate(phases):
            if k is None:
                fake.stop()
                fake = None
            else:
                if fake is None:
                    fake = FakeServer({}, port=port).start()
                for path, reply in kind.routes(k).items():
                    reply.headers["Connection"] = "close"  # no kept-alive connection outlives a stop
                    fake.script(path, reply)
            await agent.gather_once(T0 + i * 10 * S)
        await agent.close()

    try:
        asyncio.run(run())
    finally:
        if fake is not None:
            fake.stop()
    return out.getvalue().decode().splitlines()


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
            assert measurement == "llm_server" and field in {"latency_ms", "queue", "busy_seconds_total", "busy_seconds_per_s"}, field
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
