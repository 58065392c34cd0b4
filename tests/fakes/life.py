"""A model server's whole life, scripted for every server type: fresh start (every counter 0), load,
idle, restart (counters back to 0), an outage (connection refused) and its return.

`live(kind)` runs the real agent through it and returns every line it wrote to stdout.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from dataclasses import dataclass

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.processors import build_processors
from telegraf_llm_input.proxy.measure import Meters
from telegraf_llm_input.proxy.names import PAGE_PATH
from telegraf_llm_input.servertypes import TYPES
from telegraf_llm_input.sinks.stdout import StdoutSink
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv
from tests.fakes.llm import (
    VLLM_HIST,
    VLLM_TOKEN_HIST,
    Snap,
    llamacpp_metrics,
    llamacpp_props,
    llamacpp_slots,
    vllm_page,
)
from tests.fakes.llm_more import TGI_INFO, sglang_page, tgi_page
from tests.fakes.server import FakeServer, Reply

S = 1_000_000_000
T0 = 1_700_000_000 * S
M = "Qwen/Qwen2.5-7B-Instruct"
B = [0.1, 1.0]

LIFE: tuple[tuple[str, float | None], ...] = (
    ("fresh", 0.0),
    ("load", 1.0),
    ("more load", 2.5),
    ("idle", 2.5),
    ("restart", 0.0),
    ("load again", 0.7),
    ("down", None),
    ("up", 1.3),
)
"""(phase, scale of every counter; None: the server is gone)."""


def hist(k: float) -> tuple[list[float], list[float], float]:
    n = round(10 * k)
    return B, [round(4 * k), n, n], 0.35 * n


def tokens(k: float) -> tuple[list[float], list[float], float]:
    n = round(10 * k)
    return [100.0, 1000.0], [round(4 * k), n, n], 420.0 * n


def vllm(k: float) -> dict:
    even = lambda x: 2 * round(x / 2)  # noqa: E731 - each of the two engines reports half
    snap = Snap(
        running=round(3 * k),
        waiting=round(k),
        kv=0.25 * k,
        prompt=round(1000 * k),
        generation=round(5000 * k),
        finished={"stop": round(9 * k), "length": round(k)},
        preemptions=round(2 * k),
        hists={**{p: hist(k) for p in VLLM_HIST}, **{p: tokens(k) for p in VLLM_TOKEN_HIST}},
        prefix_queries=even(900 * k),
        prefix_hits=even(300 * k),
        spec=(even(200 * k), even(600 * k), even(350 * k)),
        lora=(["sql-lora"], [], 4) if k else None,
    )
    return {"/metrics": Reply(vllm_page({M: snap}, engines=2)), "/version": Reply({"version": "0.11.0"})}


def sglang(k: float) -> dict:
    page = sglang_page(
        M,
        2,
        round(2 * k),
        [0.1 * k, 0.3 * k],
        round(900 * k),
        round(4000 * k),
        round(8 * k),
        hist(k),
        cached=round(300 * k),
        hit_rate=0.3 * k,
        spec=(1 + 1.5 * k, 0.6 * k if k else 0.0),
    )
    return {"/metrics": Reply(page), "/get_server_info": Reply({"model_path": M, "tp_size": 2, "version": "0.4.9"})}


def tgi(k: float) -> dict:
    page = tgi_page(
        round(40 * k),
        {"validation": round(2 * k)} if k else {},
        round(k),
        round(3 * k),
        round(7000 * k),
        round(9000 * k),
        hist(k),
        max_new_sum=round(20000 * k),
    )
    return {"/metrics": Reply(page), "/info": Reply(TGI_INFO)}


def llamacpp(k: float) -> dict:
    # a fresh llama-server says `prompt_seconds_total 0`, later `0.022008`: the field is a float from the start
    page = llamacpp_metrics(
        round(300 * k), round(700 * k), 0.022008 * k, 1.5 * k, processing=round(k), decode_calls=round(90 * k)
    )
    return {
        "/health": Reply({"status": "ok"}),
        "/metrics": Reply(page),
        "/slots": Reply(llamacpp_slots(round(k) % 3, 2)),
        "/props": Reply(llamacpp_props(2)),
        "/v1/models": Reply({"object": "list", "data": [{"id": "qwen"}]}),
    }


def ollama(k: float) -> dict:
    models = (
        [
            {
                "name": "qwen2.5:1.5b",
                "model": "qwen2.5:1.5b",
                "size": round(2e9 * (1 + k)),
                "size_vram": round(1.5e9 * (1 + k)),
                "digest": "abc",
                "details": {},
                "expires_at": "2100-01-01T00:00:00Z",
                "context_length": 8192,
            }
        ]
        if k
        else []
    )
    return {
        "/api/version": Reply({"version": "0.6.5"}),
        "/api/ps": Reply({"models": models}),
        "/": Reply("Ollama is running"),
    }


def lmstudio(k: float) -> dict:
    models = [
        {
            "id": "qwen2.5-7b",
            "object": "model",
            "type": "llm",
            "publisher": "qwen",
            "arch": "qwen2",
            "compatibility_type": "gguf",
            "quantization": "Q4_K_M",
            "state": "loaded" if k else "not-loaded",
            "max_context_length": 32768,
        }
    ]
    return {
        "/api/v0/models": Reply({"object": "list", "data": models}),
        "/v1/models": Reply({"object": "list", "data": [{"id": "qwen2.5-7b", "object": "model"}]}),
    }


def openai(k: float) -> dict:
    return {"/v1/models": Reply({"object": "list", "data": [{"id": "qwen", "object": "model"}]})}


def json_doc(k: float) -> dict:
    return {
        "/metrics": Reply(
            {"latency_ms": 800 * k, "tokens": round(1000 * k), "busy_seconds": 3.0 * k, "queue": round(2 * k)}
        )
    }


JSON_FIELDS = {
    "latency_ms": {"path": "latency_ms"},
    "queue": {"path": "queue", "type": "int"},
    "generation_tokens_total": {"path": "tokens", "kind": "counter", "type": "int"},
    "busy_seconds_total": {"path": "busy_seconds", "kind": "counter"},
}


def prometheus(k: float) -> dict:
    lines = [
        "# TYPE app_hits_total counter",
        f'app_hits_total{{path="/a"}} {round(100 * k)}',
        "# TYPE app_busy_seconds_total counter",
        f"app_busy_seconds_total {0.5 * k!r}",
        "# TYPE app_inflight gauge",
        f"app_inflight {round(3 * k)}",
        "# TYPE app_latency_seconds histogram",
        *(f'app_latency_seconds_bucket{{le="{le}"}} {c}' for le, c in zip(["0.1", "1", "+Inf"], hist(k)[1])),
        f"app_latency_seconds_count {hist(k)[1][-1]}",
        f"app_latency_seconds_sum {hist(k)[2]}",
    ]
    return {"/metrics": Reply("\n".join(lines) + "\n")}


def proxy(k: float) -> dict:
    """Our proxy's page, rendered by the proxy's own registry after k-scaled traffic (real names and layout)."""
    meters = Meters()
    chat, generate = (M, "openai_chat"), (M, "ollama_generate")
    for i in range(round(10 * k)):
        labels = chat if i % 2 else generate
        meters.requests.inc((*labels, "ok" if i % 5 else "http_5xx", "200" if i % 5 else "500"))
        for family, seconds in ((meters.ttft, 0.05), (meters.ttfa, 0.4), (meters.itl, 0.02), (meters.tpot, 0.02)):
            family.observe(labels, seconds)
        meters.e2e.observe(labels, 0.35)
        meters.load.observe(generate, 0.0 if i else 2.5)
        meters.prompt_hist.observe(labels, 420)
        meters.gen_hist.observe(labels, 100)
        meters.prompt_tokens.inc(labels, 420)
        meters.gen_tokens.inc((*labels, "server"), 100)
    meters.in_flight.inc(chat, round(2 * k))
    return {PAGE_PATH: Reply(meters.page().decode())}


@dataclass(frozen=True)
class Kind:
    type: str
    routes: Callable[[float], dict]
    extra: tuple = ()

    def target(self, url: str) -> dict:
        out = {"url": url, "name": self.type, "type": self.type, "timeout": "1s", "process": {"enabled": False}}
        out.update(dict(self.extra))
        return out


ROUTES: dict[str, tuple[Callable[[float], dict], tuple]] = {
    "proxy": (proxy, ()),
    "vllm": (vllm, ()),
    "sglang": (sglang, ()),
    "tgi": (tgi, ()),
    "llamacpp": (llamacpp, ()),
    "ollama": (ollama, ()),
    "lmstudio": (lmstudio, ()),
    "openai": (openai, ()),
    "mlx": (openai, ()),
    "json": (json_doc, (("json_fields", JSON_FIELDS),)),
    "prometheus": (prometheus, (("measurement", "llm_server"),)),
}
"""Server type -> its fake's routes over a life, and target keys it needs: one per type of the registry
(tests/servers/test_registry.py)."""

KINDS = [*(Kind(t, *ROUTES[t]) for t in TYPES if t in ROUTES), Kind("auto", vllm)]
"""Every server type in the registry's order, then `auto` (a vLLM found by detection)."""


def live(kind: Kind, process: bool = False, **sections) -> list[str]:
    """Every line the agent writes while a server of this kind lives its whole life.

    `process`: also follow the server's process (the fake runs in this one); `sections`: more config
    (`gpu`, `host`, `logs`), off by default."""
    out = io.BytesIO()
    fake = FakeServer({}).start()
    port = fake.port
    target = kind.target(fake.url)
    if process:
        target["process"] = {"enabled": True}
    config = parse_config({"targets": [target], "host": {"enabled": False}, "gpu": {"enabled": False}, **sections})
    env = SourceEnv()
    agent = Agent(build_sources(config, env), [StdoutSink(out)], deadline_s=3.0, processors=build_processors(config))
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
