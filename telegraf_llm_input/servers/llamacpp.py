"""llama.cpp `llama-server`: `/health`, `/metrics` (with `--metrics`), `/slots`, `/props`.

Facts that shape this module:
- `/health` needs no key even with `--api-key`; it answers 503 "Loading model" while loading.
- `/metrics` and `/slots` go through the server's task queue, so they can block while it
  decodes: a timeout there with a healthy `/health` means busy, not down (no retry).
- Its `*_tokens_seconds` gauges reset on every scrape (wrong with two scrapers): tokens/s come
  from counter deltas instead.
- No model label: the model is `/props` `model_alias`, else the file name of `model_path`; the
  version is its `build_info` (`b6000-3ad5a0d0`), from the same answer.
"""

from __future__ import annotations

import asyncio
import os

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError
from telegraf_llm_input.servers.base import Fetcher, ModelReading, Reading, Rule, version_tags
from telegraf_llm_input.servers.promtable import PromTable, parse_checked, read_page

TYPE = "llamacpp"
NAME = "llama.cpp"
FIELDS = ("busy", "loading", "slots_total", "slots_busy", "context_used_ratio")
"""llm_server fields read outside the table (`/health`, `/slots`, `/props`)."""

TABLE = PromTable(
    server_type=TYPE,
    prefix="llamacpp:",
    model_label=None,
    gauges={
        "requests_running": ("llamacpp:requests_processing",),
        "requests_waiting": ("llamacpp:requests_deferred",),
        "kv_cache_usage_ratio": ("llamacpp:kv_cache_usage_ratio",),
    },
    counters={
        "prompt_tokens_total": ("llamacpp:prompt_tokens_total",),
        "generation_tokens_total": ("llamacpp:tokens_predicted_total",),
        "prompt_seconds_total": ("llamacpp:prompt_seconds_total",),
        "generation_seconds_total": ("llamacpp:tokens_predicted_seconds_total",),
        "decode_calls_total": ("llamacpp:n_decode_total",),
    },
    speeds={
        "prompt_speed_tokens_per_s": ("prompt_tokens_total", "prompt_seconds_total"),
        "generation_speed_tokens_per_s": ("generation_tokens_total", "generation_seconds_total"),
    },
)


def model_from_props(props: dict) -> str | None:
    alias = props.get("model_alias")
    if isinstance(alias, str) and alias:
        return alias
    path = props.get("model_path") or (props.get("default_generation_settings") or {}).get("model")
    if isinstance(path, str) and path:
        return os.path.basename(path)
    return None


def timings_fields(timings) -> dict[str, float]:
    """The `timings` object llama-server adds to a completion (also in OpenAI-style answers).

    Keys `prompt_n`, `prompt_ms`, `predicted_n`, `predicted_ms` (and `cache_n` for prompt tokens
    reused from the cache); speeds are recomputed from them rather than trusted.
    """
    if not isinstance(timings, dict):
        return {}

    def num(key):
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


def slot_fields(slots: list) -> dict[str, float]:
    """slots_total, slots_busy and, where the build reports `n_past`, the fullest busy slot's context."""
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
            n_ctx, n_past = slot.get("n_ctx"), slot.get("n_past")
            if isinstance(n_ctx, (int, float)) and n_ctx > 0 and isinstance(n_past, (int, float)):
                fill.append(min(1.0, n_past / n_ctx))
    out: dict[str, float] = {"slots_total": len(slots), "slots_busy": busy}
    if fill:
        out["context_used_ratio"] = max(fill)
    return out


async def _optional(coro):
    """A page that may be off (`--no-slots`, no `--metrics`: 501/404) or blocked (timeout)."""
    try:
        return await coro, None
    except FetchError as exc:
        if exc.kind == "http_status" and exc.status in (404, 501):
            return None, None
        if exc.kind == "timeout":
            return None, "busy"
        raise


class LlamaCppAdapter:
    server_type = TYPE

    async def read(self, fetch: Fetcher) -> Reading:
        health = await fetch.get("/health", auth=False, accept=(503,))
        if health.status == 503 and "loading" in health.text().lower():
            return Reading(health={"up": 0, "loading": 1}, server_type=TYPE)
        path = fetch.target.metrics_path or "/metrics"
        (page, m_state), (slots, s_state), (props, _) = await asyncio.gather(
            _optional(fetch.text(path, retries=0)),
            _optional(fetch.json("/slots", retries=0)),
            _optional(fetch.json("/props")),
        )
        model = model_from_props(props) if isinstance(props, dict) else None
        models = (
            read_page(TABLE, parse_checked(page, TABLE, f"{fetch.target.display_name}{path}"), model)
            if page is not None
            else []
        )
        reading = models[0] if models else ModelReading(model)
        if isinstance(slots, list):
            reading.gauges.update(slot_fields(slots))
        elif isinstance(props, dict) and isinstance(props.get("total_slots"), int):
            reading.gauges["slots_total"] = props["total_slots"]
        busy = 1 if "busy" in (m_state, s_state) else 0
        tags = version_tags(props.get("build_info")) if isinstance(props, dict) else {}
        return Reading([reading], health={"busy": busy}, server_type=TYPE, tags=tags)


def make(target: TargetConfig) -> LlamaCppAdapter:
    return LlamaCppAdapter()


DETECT = (
    Rule("/metrics", contains="llamacpp:"),
    Rule("/props", any_keys=("default_generation_settings", "total_slots")),
)
