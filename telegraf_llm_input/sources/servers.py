"""Builds one `ServerSource` per configured target, or, with no `targets:`, discovers them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from telegraf_llm_input.http import FetchError, HttpPool, pool_for
from telegraf_llm_input.log import get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sources.base import GatherContext, Source, SourceEnv
from telegraf_llm_input.targets import DiscoveryConfig, TargetConfig

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config
    from telegraf_llm_input.sources.server import ServerSource

log = get_logger("discovery")


def build(config: Config, env: SourceEnv) -> list[Source]:
    pool = pool_for(env)
    if config.targets is None:
        if not config.discovery.enabled:
            return []
        return [DiscoverySource(config.discovery, pool, env.discovered_targets)]
    return [_server_source(t, pool) for t in config.targets]


def _server_source(target: TargetConfig, pool: HttpPool) -> ServerSource:
    # Imported when there is a server to scrape: discovery that finds nothing never loads the adapters and
    # their parsers (start-up time); the adapters also import this package.
    from telegraf_llm_input.servers import make_adapter
    from telegraf_llm_input.sources.server import ServerSource

    return ServerSource(target, make_adapter(target), pool)


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


async def discover(cfg: DiscoveryConfig, pool: HttpPool, ports: Sequence[int]) -> dict[int, TargetConfig]:
    """Targets found on `ports` of `cfg.host`, typed by what each answers."""

    async def one(port: int) -> tuple[int, TargetConfig | None]:
        if not await _port_open(cfg.host, port, cfg.timeout):
            return port, None
        from telegraf_llm_input.servers import detect
        from telegraf_llm_input.sources.server import Fetcher

        probe = TargetConfig(url=f"http://{cfg.host}:{port}", timeout=cfg.timeout, retries=0)
        try:
            kind = await detect(Fetcher(pool, probe))
        except FetchError:
            return port, None
        if kind is None:
            return port, None
        return port, TargetConfig(url=probe.url, type=kind)

    found = await asyncio.gather(*(one(p) for p in ports))
    return {port: target for port, target in found if target is not None}


class DiscoverySource:
    """Looks at the usual ports, then scrapes what it found; tries empty ports again every `rescan`."""

    name = "discovery"

    def __init__(self, cfg: DiscoveryConfig, pool: HttpPool, found: list[TargetConfig] | None = None):
        self._cfg = cfg
        self._pool = pool.retain()
        self._found = found if found is not None else []
        """Shared with sources that follow discovered servers (their processes): appended as found."""
        self._sources: dict[int, ServerSource] = {}
        self._scanned_at: float | None = None

    async def _scan(self) -> None:
        missing = [p for p in self._cfg.ports if p not in self._sources]
        first = self._scanned_at is None
        self._scanned_at = time.monotonic()
        if not missing:
            return
        found = await discover(self._cfg, self._pool, missing)
        for port, target in found.items():
            self._sources[port] = _server_source(target, self._pool)
            self._found.append(target)
        if found or first:
            what = ", ".join(f"{t.type} at {t.url}" for t in found.values()) or "no model server"
            log.info("discovery on %s ports %s: found %s", self._cfg.host,
                     ",".join(str(p) for p in missing), what)

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        if self._scanned_at is None or time.monotonic() - self._scanned_at >= self._cfg.rescan:
            await self._scan()
        results = await asyncio.gather(*(s.gather(ctx) for s in self._sources.values()), return_exceptions=True)
        metrics: list[Metric] = []
        for r in results:
            if isinstance(r, BaseException):
                log.warning("discovered target failed: %s", r)
                continue
            metrics.extend(r)
        return metrics

    def missed(self, ctx: GatherContext, reason: str) -> Sequence[Metric]:
        """Every discovered target's `up=0` for a gather that did not finish in time."""
        return [m for s in self._sources.values() for m in s.missed(ctx, reason)]

    def stats(self) -> dict[str, int]:
        return {"models_dropped": sum(s.stats()["models_dropped"] for s in self._sources.values())}

    def down_reasons(self) -> dict[str, str]:
        return {name: why for s in self._sources.values() for name, why in s.down_reasons().items()}

    @property
    def targets(self) -> list[TargetConfig]:
        return [s.target for s in self._sources.values()]

    async def close(self) -> None:
        for s in self._sources.values():
            await s.close()
        await self._pool.release()
