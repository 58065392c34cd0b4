"""Which model a probe may ask for without changing what the server holds in memory (pure).

Ollama and LM Studio load whatever model a request names, and Ollama restarts a model's unload countdown
with every request (`keep_alive`, 5 minutes by default). So on those servers the probe asks only for a model
that is loaded now, and on Ollama sends as `keep_alive` the time that model had left, less what the probe
itself will take (its last duration): when the probe ends, `expires_at` is where it was. Nothing loaded: no
probe (unless `probe.model` names one: then the user asked for it to be loaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from telegraf_llm_input.probe.measure import ProbeSkip
from telegraf_llm_input.servers.ollama import seconds_until

MIN_KEEP_ALIVE_S = 1.0
"""A model with less left than this after the probe would unload during or right after it: not probed."""
FOREVER_S = 100 * 365 * 86400.0
"""More left than this is Ollama's "keep forever" (`keep_alive: -1` shows ~292 years ahead): sent as -1."""


@dataclass(frozen=True)
class Loaded:
    """A model in memory now; `remaining_s`: seconds until it unloads (None: the server does not say)."""

    name: str
    remaining_s: float | None = None


@dataclass(frozen=True)
class Plan:
    model: str | None
    keep_alive: float | None = None
    """Ollama `keep_alive` in seconds (-1: forever); None: not sent."""


@dataclass(frozen=True)
class Skip:
    reason: ProbeSkip
    model: str | None = None


def ollama_loaded(ps: object, now: datetime) -> list[Loaded] | None:
    """The models of an `/api/ps` answer with their time left; None when it is not one."""
    models = ps.get("models") if isinstance(ps, dict) else None
    if not isinstance(models, list):
        return None
    out = []
    for entry in models:
        if isinstance(entry, dict):
            name = entry.get("name") or entry.get("model")
            if isinstance(name, str) and name:
                out.append(Loaded(name, seconds_until(entry.get("expires_at"), now)))
    return out


def lmstudio_loaded(doc: object, now: datetime | None = None) -> list[Loaded] | None:
    """The loaded chat models of LM Studio's `/api/v0/models` (`state: loaded`; not embedding models); LM Studio
    says nothing of when one unloads (`now` is not needed)."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        return None
    return [
        Loaded(e["id"])
        for e in data
        if isinstance(e, dict)
        and e.get("state") == "loaded"
        and e.get("type") != "embeddings"
        and isinstance(e.get("id"), str)
    ]


def keep_alive(remaining_s: float | None, expected_s: float) -> float | Skip | None:
    """What to send so the countdown ends where it was: the time left less the probe's expected duration."""
    if remaining_s is None:
        return None
    if remaining_s > FOREVER_S:
        return -1.0
    seconds = remaining_s - expected_s
    if seconds < MIN_KEEP_ALIVE_S:
        return Skip("model_unloading")
    return round(seconds, 3)


def plan(loaded: list[Loaded], configured: str | None, previous: str | None, expected_s: float) -> Plan | Skip:
    """The model to probe: the configured one, else the last one while it stays loaded, else the first loaded."""
    by_name = {m.name: m for m in loaded}
    if configured is not None and configured not in by_name:
        return Plan(configured)  # named by the user: asked for even when that loads it
    name = configured or (previous if previous in by_name else None) or (loaded[0].name if loaded else None)
    if name is None:
        return Skip("no_model_loaded")
    ka = keep_alive(by_name[name].remaining_s, expected_s)
    if isinstance(ka, Skip):
        return Skip(ka.reason, name)
    return Plan(name, ka)
