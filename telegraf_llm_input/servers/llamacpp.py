"""llama.cpp `llama-server`: `/health`, `/metrics` (with `--metrics`), `/slots`, `/props`.

Facts that shape this module:
- `/health` needs no key even with `--api-key`; it answers 503 "Loading model" while loading.
- `/metrics` and `/slots` go through the server's task queue, so they can block while it
  decodes: a timeout there with a healthy `/health` means busy, not down (no retry).
- Until the model is loaded every path, `/health` too, answers 503 "Loading model": `/health`
  is asked only when neither `/metrics` nor `/slots` answered.
- Its `*_tokens_seconds` gauges reset on every scrape (wrong with two scrapers): tokens/s come
  from counter deltas instead.
- No model label: the model is `/props` `model_alias`, else the file name of `model_path`; the
  version is its `build_info` (`b6000-3ad5a0d0`), from the same answer.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from typing import Any

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError, Response
from telegraf_llm_input.servers.base import Fetcher, ModelReading, Reading, Rule, version_tags
from telegraf_llm_input.servers.promtable import PromTable
from telegraf_llm_input.servers.readplan import PageReader

TYPE = "llamacpp"
NAME = "llama.cpp"
FIELDS = ("slots_total", "slots_busy", "context_used_ratio", "prefix_cache_queries_total")
"""llm_server fields read outside the table (`/slots`, `/props`; the prefix-cache queries: a sum). `busy` and
`loading` are health fields every server's points carry (0 where nothing sets them)."""

TABLE = PromTable(
    server_type=TYPE,
    prefix="llamacpp:",
    model_label=None,
    gauges={
        "requests_running": ("llamacpp:requests_processing",),
        "requests_waiting": ("llamacpp:requests_deferred",),
        "kv_cache_usage_ratio": ("llamacpp:kv_cache_usage_ratio",),
        "busy_slots_per_decode": ("llamacpp:n_busy_slots_per_decode",),
    },
    counters={
        "prompt_tokens_total": ("llamacpp:prompt_tokens_total",),
        "generation_tokens_total": ("llamacpp:tokens_predicted_total",),
        "prompt_seconds_total": ("llamacpp:prompt_seconds_total",),
        "generation_seconds_total": ("llamacpp:tokens_predicted_seconds_total",),
        "decode_calls_total": ("llamacpp:n_decode_total",),
        "prefix_cache_hits_total": ("llamacpp:prompt_tokens_cached_total",),
        "spec_decode_drafts_total": ("llamacpp:spec_decode_num_drafts_total",),
        "spec_decode_draft_tokens_total": ("llamacpp:spec_decode_num_draft_tokens_total",),
        "spec_decode_accepted_tokens_total": ("llamacpp:spec_decode_num_accepted_tokens_total",),
    },
    speeds={
        "prompt_speed_tokens_per_s": ("prompt_tokens_total", "prompt_seconds_total"),
        "generation_speed_tokens_per_s": ("generation_tokens_total", "generation_seconds_total"),
        "prefix_cache_hit_ratio": ("prefix_cache_hits_total", "prefix_cache_queries_total"),
        "spec_decode_acceptance_ratio": ("spec_decode_accepted_tokens_total", "spec_decode_draft_tokens_total"),
        # each verification step also yields the target model's own token, as vLLM counts it
        "spec_decode_mean_accept_length": ("spec_decode_accepted_tokens_total", "spec_decode_drafts_total", 1.0),
    },
)


def model_from_props(props: dict[str, Any]) -> str | None:
    alias = props.get("model_alias")
    if isinstance(alias, str) and alias:
        return alias
    path = props.get("model_path") or (props.get("default_generation_settings") or {}).get("model")
    if isinstance(path, str) and path:
        return os.path.basename(path)
    return None


def timings_fields(timings: object) -> dict[str, float]:
    """The `timings` object llama-server adds to a completion (also in OpenAI-style answers).

    Keys `prompt_n`, `prompt_ms`, `predicted_n`, `predicted_ms` (and `cache_n` for prompt tokens
    reused from the cache); speeds are recomputed from them rather than trusted.
    """
    if not isinstance(timings, dict):
        return {}

    def num(key: str) -> float | None:
        v = timings.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None

    out: dict[str, float] = {}
    prompt_n, prompt_ms, gen_n, gen_ms = num("prompt_n"), num("prompt_ms"), num("predicted_n"), num("predicted_ms")
    for key, value in (
        ("prompt_tokens", prompt_n),
        ("prompt_ms", prompt_ms),
        ("generation_tokens", gen_n),
        ("generation_ms", gen_ms),
        ("cached_tokens", num("cache_n")),
    ):
        if value is not None:
            out[key] = value
    if prompt_n is not None and prompt_ms:
        out["prompt_tokens_per_s"] = prompt_n / prompt_ms * 1000
    if gen_n is not None and gen_ms:
        out["generation_tokens_per_s"] = gen_n / gen_ms * 1000
        if gen_n:
            out["tpot_ms"] = gen_ms / gen_n
    return out


def with_cache_queries(reading: ModelReading) -> ModelReading:
    """`prefix_cache_queries_total`: prompt tokens looked up in the cache, as vLLM counts them. llama-server's
    `prompt_tokens_total` excludes the tokens reused from the cache (`prompt_tokens_cached_total`): their sum."""
    counters = reading.counters
    if "prompt_tokens_total" in counters and "prefix_cache_hits_total" in counters:
        counters["prefix_cache_queries_total"] = counters["prompt_tokens_total"] + counters["prefix_cache_hits_total"]
    return reading


def _context_used(slot: dict[str, object]) -> float | None:
    """Tokens in the slot's context: `n_past` where the build has it; newer builds dropped it, and their
    `n_prompt_tokens` is the slot's cached tokens, the generated ones included (`prompt.tokens.size()`, each sampled
    token pushed back: 16 prompt tokens and 307 decoded read 323 on the tests' build)."""
    for key in ("n_past", "n_prompt_tokens"):
        value = slot.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return None


def slot_fields(slots: list[object]) -> dict[str, float]:
    """slots_total, slots_busy and the fullest busy slot's context (`_context_used`)."""
    busy = 0
    fill: list[float] = []
    for slot in slots:
        if not isinstance(slot, dict):
            continue
        processing = slot.get("is_processing")
        if processing is None:
            processing = slot.get("state", 0) != 0  # older builds: 0 = idle
        if processing:
            busy += 1
            n_ctx, used = slot.get("n_ctx"), _context_used(slot)
            if isinstance(n_ctx, (int, float)) and n_ctx > 0 and used is not None:
                fill.append(min(1.0, used / n_ctx))
    out: dict[str, float] = {"slots_total": len(slots), "slots_busy": busy}
    if fill:
        out["context_used_ratio"] = max(fill)
    return out


PROPS_EVERY_S = 60.0
"""`/props` (model, slots, build) is asked this often, and at once after an outage, while loading, and when the
counters went back (a restart between two gathers, perhaps with another model)."""
RESTART_COUNTERS = ("decode_calls_total", "prompt_tokens_total", "generation_tokens_total")


async def _answer(coro: Awaitable[Response]) -> Response | FetchError:
    try:
        return await coro
    except FetchError as exc:
        return exc


def _is_loading(answer: Response | FetchError) -> bool:
    """Every path, `/health` too, answers 503 "Loading model" until the model is loaded (server-http.cpp)."""
    return isinstance(answer, Response) and answer.status == 503 and b"loading" in answer.body.lower()


def _state(answer: Response | FetchError) -> str:
    """ok, off (`--no-slots`, no `--metrics`: 501/404), busy (no answer in time: blocked behind decoding), or
    failed (anything else: the server is not answering as it should)."""
    if isinstance(answer, Response):
        return "ok" if answer.status < 300 else "failed"
    if answer.kind == "http_status" and answer.status in (404, 501):
        return "off"
    return "busy" if answer.kind == "timeout" else "failed"


class LlamaCppAdapter:
    """Per gather: `/metrics` and `/slots` at once; `/props` only when due (PROPS_EVERY_S); `/health` only when
    neither of the two answered (to tell a server blocked while it decodes from one that is gone)."""

    server_type = TYPE

    def __init__(self) -> None:
        self._props: dict[str, Any] | None = None
        self._props_at: float | None = None
        """`time.monotonic()` of the last `/props` answer; None: ask on the next gather."""
        self._counters: dict[str, float] = {}
        self._reader = PageReader(TABLE)

    async def read(self, fetch: Fetcher) -> Reading:
        try:
            return await self._read(fetch)
        except FetchError:
            self._props_at = None  # down: it may come back with another model
            raise

    async def _read(self, fetch: Fetcher) -> Reading:
        path = fetch.target.metrics_path or "/metrics"
        ask_props = self._props_at is None or time.monotonic() - self._props_at >= PROPS_EVERY_S
        first = _leaving_time_for_health(fetch)
        page, slots, *props = await asyncio.gather(
            _answer(first.get(path, retries=0, accept=(503,))),
            _answer(first.get("/slots", retries=0, accept=(503,))),
            *([_answer(first.get("/props", accept=(503,)))] if ask_props else []),
        )
        answers = (page, slots, *props)
        if any(_is_loading(a) for a in answers):
            return self._loading()
        for answer in answers:
            if _state(answer) == "failed":
                raise answer if isinstance(answer, FetchError) else _status_error(answer)
        states = {_state(page), _state(slots)}
        if "ok" not in states:
            health = await fetch.get("/health", auth=False, accept=(503,))  # raises when it is gone
            if _is_loading(health):
                return self._loading()
        if props:
            await self._keep_props(fetch, props[0])
        models = (
            self._reader.readings(self._reader.scan(page, f"{fetch.target.display_name}{path}"))
            if isinstance(page, Response)
            else []
        )
        if models and self._went_back(models[0]) and not props:
            await self._keep_props(fetch, await _answer(fetch.get("/props", accept=(503,))))
        model = model_from_props(self._props) if self._props is not None else None
        reading = with_cache_queries(models[0]) if models else ModelReading(model)
        reading.model = model
        slot_list = await fetch.json_of(slots) if isinstance(slots, Response) else None
        if isinstance(slot_list, list):
            reading.gauges.update(slot_fields(slot_list))
        elif self._props is not None and isinstance(self._props.get("total_slots"), int):
            reading.gauges["slots_total"] = self._props["total_slots"]
        busy = 1 if "busy" in states else 0
        tags = version_tags(self._props.get("build_info")) if self._props is not None else {}
        return Reading([reading], health={"busy": busy}, server_type=TYPE, tags=tags)

    def _loading(self) -> Reading:
        self._props_at = None  # the model being loaded is read once it is up
        return Reading(health={"up": 0, "loading": 1}, server_type=TYPE)

    async def _keep_props(self, fetch: Fetcher, answer: Response | FetchError) -> None:
        """A good answer replaces the last one; any other keeps it (and asks again next gather)."""
        props = None
        if isinstance(answer, Response) and answer.status < 300:
            try:
                props = await fetch.json_of(answer)
            except FetchError:
                props = None
        if isinstance(props, dict):
            self._props, self._props_at = props, time.monotonic()
        else:
            self._props_at = None

    def _went_back(self, reading: ModelReading) -> bool:
        """Did a counter go down since the last gather (the server restarted in between)?"""
        now = {k: reading.counters[k] for k in RESTART_COUNTERS if k in reading.counters}
        before, self._counters = self._counters, now
        return any(value < before[k] for k, value in now.items() if k in before)


def _leaving_time_for_health(fetch: Fetcher) -> Fetcher:
    """The fetcher for the first requests: it stops early enough that `/health` still has its share of the
    gather's budget (a third, at most the target's timeout) when neither `/metrics` nor `/slots` answered."""
    if fetch.deadline is None:
        return fetch
    reserve = min(fetch.target.timeout, (fetch.deadline - time.monotonic()) / 3)
    return Fetcher(fetch.pool, fetch.target, fetch.deadline - max(0.0, reserve))


def _status_error(answer: Response) -> FetchError:
    return FetchError("http_status", f"GET {answer.url}: HTTP {answer.status}", answer.status)


def make(target: TargetConfig) -> LlamaCppAdapter:
    return LlamaCppAdapter()


DETECT = (
    Rule("/metrics", contains="llamacpp:"),
    Rule("/props", any_keys=("default_generation_settings", "total_slots")),
)
