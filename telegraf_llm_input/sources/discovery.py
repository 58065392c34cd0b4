"""With no `targets:`: look for model servers on the usual local ports, then scrape what answers.

A port is first only connected to; the HTTP client, the adapters and the target source are loaded when one
answers (`targets`, lazily): a machine with no model server running never loads them (start-up time, memory).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from telegraf_llm_input.config import Config
from telegraf_llm_input.config.targets import DiscoveryConfig, TargetConfig
from telegraf_llm_input.lazy import lazy_import
from telegraf_llm_input.log import get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sources.base import GatherContext, Source, SourceEnv

if TYPE_CHECKING:
    from telegraf_llm_input.http import HttpPool
    from telegraf_llm_input.sources import target as targets
    from telegraf_llm_input.sources.target import ServerSource
else:
    targets = lazy_import("telegraf_llm_input.sources.target")

log = get_logger("discovery")


def build(config: Config, env: SourceEnv) -> list[Source]:
    if config.targets is not None or not config.discovery.enabled:
        return []
    return [DiscoverySource(config.discovery, env.http_pool, env.discovered_targets)]


async def _port_open(host: str, port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


async def discover(cfg: DiscoveryConfig, pool: Callable[[], HttpPool], ports: Sequence[int]) -> dict[int, TargetConfig]:
    """Targets found on `ports` of `cfg.host`, typed by what each answers (`pool()` only once a port is open)."""

    async def one(port: int) -> tuple[int, TargetConfig | None]:
        if not await _port_open(cfg.host, port, cfg.timeout):
            return port, None
        return port, await targets.detect_target(f"http://{cfg.host}:{port}", cfg.timeout, pool())

    found = await asyncio.gather(*(one(p) for p in ports))
    return {port: target for port, target in found if target is not None}


class DiscoverySource:
    """Looks at the usual ports and hands each server it finds to the agent as a source of its own (`Finds`);
    tries empty ports again every `rescan`. It has no points of its own: its `llm_agent` line says whether
    looking worked; each server's line (`server:<url>`) says how scraping it went."""

    name = "discovery"

    def __init__(self, cfg: DiscoveryConfig, pool: Callable[[], HttpPool], found: list[TargetConfig] | None = None):
        self._cfg = cfg
        self._make_pool = pool
        self._pool: HttpPool | None = None
        """Retained when a port first answers."""
        self._found = found if found is not None else []
        """Shared with sources that follow discovered servers (their processes): appended as found."""
        self._sources: dict[int, ServerSource] = {}
        self._scanned_at: float | None = None

    async def find(self, ctx: GatherContext) -> list[ServerSource]:
        if self._scanned_at is not None and time.monotonic() - self._scanned_at < self._cfg.rescan:
            return []
        missing = [p for p in self._cfg.ports if p not in self._sources]
        first = self._scanned_at is None
        self._scanned_at = time.monotonic()
        if not missing:
            return []
        found = await discover(self._cfg, self.pool, missing)
        new = []
        for port, target in found.items():
            self._sources[port] = source = targets.server_source(target, self.pool())
            new.append(source)
            self._found.append(target)
        if found or first:
            what = ", ".join(f"{t.type} at {t.url}" for t in found.values()) or "no model server"
            log.info("discovery on %s ports %s: found %s", self._cfg.host, ",".join(str(p) for p in missing), what)
        return new

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        return []

    @property
    def targets(self) -> list[TargetConfig]:
        return [s.target for s in self._sources.values()]

    def pool(self) -> HttpPool:
        if self._pool is None:
            self._pool = self._make_pool().retain()
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.release()
