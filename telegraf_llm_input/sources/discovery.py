"""With no `targets:`: look for model servers on the usual local ports, then scrape what answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from telegraf_llm_input.config import Config
from telegraf_llm_input.config.targets import DiscoveryConfig, TargetConfig
from telegraf_llm_input.http import FetchError, HttpPool
from telegraf_llm_input.log import get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.servers import detect
from telegraf_llm_input.servers.base import Fetcher
from telegraf_llm_input.sources.base import GatherContext, Source, SourceEnv
from telegraf_llm_input.sources.target import ServerSource, server_source

log = get_logger("discovery")


def build(config: Config, env: SourceEnv) -> list[Source]:
    if config.targets is not None or not config.discovery.enabled:
        return []
    return [DiscoverySource(config.discovery, env.http_pool(), env.discovered_targets)]


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
    """Looks at the usual ports and hands each server it finds to the agent as a source of its own (`Finds`);
    tries empty ports again every `rescan`. It has no points of its own: its `llm_agent` line says whether
    looking worked; each server's line (`server:<url>`) says how scraping it went."""

    name = "discovery"

    def __init__(self, cfg: DiscoveryConfig, pool: HttpPool, found: list[TargetConfig] | None = None):
        self._cfg = cfg
        self._pool = pool.retain()
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
        found = await discover(self._cfg, self._pool, missing)
        new = []
        for port, target in found.items():
            self._sources[port] = source = server_source(target, self._pool)
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

    async def close(self) -> None:
        await self._pool.release()
