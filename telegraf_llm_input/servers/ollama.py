"""Ollama: no metrics page. `/api/version` says it is up (and its version); `/api/ps` lists the loaded models.

`/api/ps` entries: `name`/`model`, `size` and `size_vram` (bytes), `expires_at` (RFC 3339),
`context_length` (newer versions). Latency comes from the probe.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.metric import Metric, clean_fields
from telegraf_llm_input.servers.base import Fetcher, Reading, Rule, version_tags

TYPE = "ollama"
NAME = "Ollama"
FIELDS = ("models_loaded",)
"""llm_server fields read from its API (`/api/ps`)."""
MODEL_MEASUREMENT = "llm_model_loaded"


def seconds_until(expires_at: object, now: datetime) -> float | None:
    """Seconds from now to an `expires_at` (RFC 3339), >= 0; None when absent or unreadable."""
    if not isinstance(expires_at, str) or not expires_at:
        return None
    text = expires_at.replace("Z", "+00:00")
    # Go prints up to 9 fractional digits; Python reads at most 6.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def loaded_models(ps: dict[str, object], now: datetime) -> list[Metric]:
    """One `llm_model_loaded` metric per model in an `/api/ps` answer (time set by the source)."""
    out = []
    entries = ps.get("models")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        name = entry.get("name") or entry.get("model")
        if not isinstance(name, str):
            continue
        size, vram = entry.get("size"), entry.get("size_vram")
        fields = clean_fields(
            {
                "size_bytes": size if isinstance(size, int) else None,
                "vram_bytes": vram if isinstance(vram, int) else None,
                "gpu_offload_ratio": vram / size
                if isinstance(size, int) and size > 0 and isinstance(vram, int)
                else None,
                "context_length": entry.get("context_length") if isinstance(entry.get("context_length"), int) else None,
                "seconds_until_unload": seconds_until(entry.get("expires_at"), now),
            }
        )
        out.append(Metric(MODEL_MEASUREMENT, {"model": name}, fields, 0))
    return out


class OllamaAdapter:
    server_type = TYPE

    async def read(self, fetch: Fetcher) -> Reading:
        version, ps = await asyncio.gather(fetch.json("/api/version"), fetch.json("/api/ps"))
        models = loaded_models(ps if isinstance(ps, dict) else {}, datetime.now(timezone.utc))
        tags = version_tags(version.get("version")) if isinstance(version, dict) else {}
        reading = Reading(extra=models, server_type=TYPE, tags=tags)
        reading.health["models_loaded"] = len(models)
        return reading


def make(target: TargetConfig) -> OllamaAdapter:
    return OllamaAdapter()


DETECT = (Rule("/api/version", keys=("version",)),)
