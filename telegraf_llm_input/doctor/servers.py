"""Which model servers answer (type, version, URL) and which ports answered nothing: each target scraped once,
the way a gather does (discovery when `targets:` is absent), without the probe."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from telegraf_llm_input.config import Config
from telegraf_llm_input.config.targets import TargetConfig, redact_url
from telegraf_llm_input.doctor.report import Check, no, note, ok
from telegraf_llm_input.http import HttpPool
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sources.base import GatherContext
from telegraf_llm_input.sources.discovery import discover
from telegraf_llm_input.sources.target import detect_target, server_source

AREA = "model servers"


@dataclass
class Server:
    target: TargetConfig
    up: bool
    server_type: str | None = None
    version: str | None = None
    reason: str | None = None


async def scrape(target: TargetConfig, pool: HttpPool) -> Server:
    source = server_source(target, pool)
    try:
        ctx = GatherContext(time_ns=time.time_ns(), deadline_s=target.timeout * (target.retries + 1) + 1)
        metrics: list[Metric] = list(await source.gather(ctx))
    finally:
        await source.close()
    server = next((m for m in metrics if m.measurement == target.measurement and "up" in m.fields), None)
    up = bool(server and server.fields.get("up"))
    reasons = source.down_reasons()
    return Server(
        target,
        up,
        (server.tags.get("server_type") if server else None) or (target.type if target.type != "auto" else None),
        server.tags.get("server_version") if server else None,
        next(iter(reasons.values()), None) if not up else None,
    )


async def find(config: Config, pool: HttpPool) -> tuple[list[Server], list[Check]]:
    """The servers (configured, or found on the discovery ports) and what to say about them."""
    checks: list[Check] = []
    if config.targets is None:
        if not config.discovery.enabled:
            return [], [note(AREA, "no targets configured and discovery is off: no model server is watched")]
        cfg = config.discovery
        found = await discover(cfg, lambda: pool, cfg.ports)
        targets = [found[p] for p in sorted(found)]
        silent = [p for p in cfg.ports if p not in found]
    elif not config.targets:
        return [], [note(AREA, "targets: [] in the config: no model server is watched")]
    else:
        targets, silent = list(config.targets), []
    servers = list(await asyncio.gather(*(scrape(t, pool) for t in targets)))
    typed = [s.target for s in servers if not s.up and config.targets is not None and s.target.type != "auto"]
    answers = await asyncio.gather(*(detect_target(t.url, t.timeout, pool) for t in typed))
    other = {t.url: a.type for t, a in zip(typed, answers) if a is not None and a.type != t.type}
    """Down as the type the config says, but answering as another: the fix names it."""
    for s in servers:
        what = " ".join(x for x in (s.server_type or "unknown type", s.version) if x)
        if s.up:
            checks.append(ok(AREA, f"{what} at {redact_url(s.target.url)}{_named(s.target)}"))
        elif config.targets is None:  # found by discovery a moment ago, down now
            checks.append(no(AREA, f"{what} at {redact_url(s.target.url)} stopped answering: {s.reason}"))
        else:
            checks.append(
                no(
                    AREA,
                    f"{redact_url(s.target.url)}{_named(s.target)}: down: {s.reason or 'no answer'}",
                    f"it answers as {other[s.target.url]}: set `type: {other[s.target.url]}` (or `auto`) for this target"
                    if s.target.url in other
                    else "start the server, or correct its url/type/token in the config",
                )
            )
    if silent:
        host = config.discovery.host
        checks.append(note(AREA, f"nothing answered as a model server on {host} ports {', '.join(map(str, silent))}"))
    if config.targets is None and not servers:
        checks.append(note(AREA, "no model server found: start one on its usual port, or list it under `targets:`"))
    return servers, checks


def _named(target: TargetConfig) -> str:
    return f" (target {target.name})" if target.name else ""
