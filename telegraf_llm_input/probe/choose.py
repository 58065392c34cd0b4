"""Which model a probe may ask for without changing what the server holds in memory (pure).

Ollama and LM Studio load whatever model a request names, so on those servers the probe asks only for a model
that is loaded now; on Ollama only for one its user is using now (a fresh countdown, `probe/watch.py`) or one kept
loaded forever, since any request restarts the unload countdown. Nothing loaded: no probe (unless `probe.model`
names one: then the user asked for it to be loaded). A model that cannot generate (an embedding model: Ollama
answers a chat with 400) is never chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from telegraf_llm_input.probe.measure import ProbeSkip
from telegraf_llm_input.servers.ollama import seconds_until


@dataclass(frozen=True)
class Loaded:
    """A model in memory now; `until_s`: when it unloads, Unix seconds (None: the server does not say)."""

    name: str
    until_s: float | None = None


@dataclass(frozen=True)
class Plan:
    model: str | None


@dataclass(frozen=True)
class Skip:
    reason: ProbeSkip
    model: str | None = None


def ollama_loaded(ps: object, now: datetime) -> list[Loaded] | None:
    """The models of an `/api/ps` answer with their `expires_at`; None when it is not one."""
    models = ps.get("models") if isinstance(ps, dict) else None
    if not isinstance(models, list):
        return None
    out = []
    for entry in models:
        if isinstance(entry, dict):
            name = entry.get("name") or entry.get("model")
            if isinstance(name, str) and name:
                left = seconds_until(entry.get("expires_at"), now)
                out.append(Loaded(name, None if left is None else now.timestamp() + left))
    return out


def generates(show: object) -> bool:
    """False when Ollama's `/api/show` says the model cannot complete text (`capabilities` without `completion`:
    an embedding model); True when it can or does not say (an Ollama older than `capabilities`, an error)."""
    caps = show.get("capabilities") if isinstance(show, dict) else None
    return not isinstance(caps, list) or not caps or "completion" in caps


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


def plan(
    loaded: list[Loaded],
    configured: str | None,
    previous: str | None,
    usable: Callable[[Loaded], bool] | None = None,
    generates: Callable[[Loaded], bool] | None = None,
) -> Plan | Skip:
    """The model to probe: the configured one, else the last one while it stays loaded, else the first loaded;
    with `generates` only one that can answer a chat (else a `no_generating_model` skip), with `usable` (Ollama:
    in use now) only one it accepts, else a `model_idle` skip."""
    if configured is not None:
        return Plan(configured)  # named by the user: asked for even when that loads it or keeps it loaded
    if not loaded:
        return Skip("no_model_loaded")
    if generates is not None:
        generating = [m for m in loaded if generates(m)]
        if not generating:
            return Skip("no_generating_model", loaded[0].name)
        loaded = generating
    ok = [m for m in loaded if usable is None or usable(m)]
    last = [m for m in ok if m.name == previous]
    if not ok:
        idle = next((m.name for m in loaded if m.name == previous), loaded[0].name)
        return Skip("model_idle", idle)
    return Plan((last or ok)[0].name)
