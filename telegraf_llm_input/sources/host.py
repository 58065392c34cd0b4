"""`llm_host`: what the machine under the model has left: CPU, memory, swap, model disk.

Swap matters most: when a model box starts swapping, tokens/s drops by an order of magnitude.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from telegraf_llm_input import hostcpu
from telegraf_llm_input.config import Config
from telegraf_llm_input.config.host import HostConfig
from telegraf_llm_input.lazy import lazy_import
from telegraf_llm_input.metric import Metric, clean_fields
from telegraf_llm_input.rates import rate
from telegraf_llm_input.sources.base import GatherContext, Source, SourceEnv

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config
    from telegraf_llm_input.sources import macos_memory
else:
    macos_memory = lazy_import("telegraf_llm_input.sources.macos_memory")  # macOS only

PSI_MEMORY = Path("/proc/pressure/memory")


def parse_psi_some_avg10(text: str) -> float | None:
    """The `some avg10` value of a Linux PSI file (`some avg10=1.23 avg60=... total=...`), or None."""
    for line in text.splitlines():
        if line.startswith("some "):
            for part in line.split()[1:]:
                key, _, value = part.partition("=")
                if key == "avg10":
                    try:
                        return float(value)
                    except ValueError:
                        return None
    return None


def read_psi_some_avg10(path: Path = PSI_MEMORY) -> float | None:
    """Percent of the last 10 s in which some task waited on memory (Linux PSI), or None."""
    try:
        return parse_psi_some_avg10(path.read_text())
    except OSError:
        return None


class HostSource:
    name = "host"

    def __init__(self, config: HostConfig):
        self._config = config
        self._prev_swap: tuple[float, int, int] | None = None
        self._primed_at = hostcpu.PRIMED_AT

    def _sample(self, time_ns: int, disk: dict[str, float] | None) -> Metric:
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        now = time.monotonic()
        swap_in = swap_out = None
        if self._prev_swap is not None:
            t0, sin0, sout0 = self._prev_swap
            swap_in = rate(sin0, sw.sin, now - t0)
            swap_out = rate(sout0, sw.sout, now - t0)
        self._prev_swap = (now, sw.sin, sw.sout)
        load: tuple[float | None, float | None, float | None]
        try:
            load = os.getloadavg()
        except OSError:
            load = (None, None, None)
        load1, load5, load15 = load
        fields = {
            "cpu_percent": self._cpu_percent(),
            "load1": load1,
            "load5": load5,
            "load15": load15,
            "mem_total_bytes": vm.total,
            "mem_used_bytes": vm.total - vm.available,
            "mem_available_bytes": vm.available,
            "mem_used_percent": vm.percent,
            "swap_total_bytes": sw.total,
            "swap_used_bytes": sw.used,
            "swap_used_percent": sw.percent,
            "swap_in_bytes_per_s": swap_in,
            "swap_out_bytes_per_s": swap_out,
            "memory_pressure_some_avg10": read_psi_some_avg10(),
            "memory_pressure_level": macos_memory.read_pressure_level() if sys.platform == "darwin" else None,
        }
        fields.update(disk or {})
        return Metric("llm_host", {}, clean_fields(fields), time_ns)

    def _disk(self) -> dict[str, float] | None:
        if not self._config.model_dir:
            return None
        try:
            du = psutil.disk_usage(self._config.model_dir)
        except OSError:
            return None
        return {
            "model_dir_free_bytes": du.free,
            "model_dir_total_bytes": du.total,
            "model_dir_used_percent": du.percent,
        }

    def _cpu_percent(self) -> float:
        return psutil.cpu_percent(interval=None)

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        # The model disk's statvfs can hang (a dead network mount): a thread keeps it from freezing the loop. The
        # rest reads /proc (or sysctl), which never waits on a device, on the loop: a thread hop costs ~0.1 ms CPU,
        # as much as the reads themselves.
        disk = await asyncio.to_thread(self._disk) if self._config.model_dir else None
        # Right after start (`--once`) there is no interval to average the CPU over yet: let a short one pass.
        wait = 0.1 - (time.monotonic() - self._primed_at)
        self._primed_at = float("-inf")
        if wait > 0:
            await asyncio.sleep(wait)
        return [self._sample(ctx.time_ns, disk)]

    async def close(self) -> None:
        return None


def build(config: Config, env: SourceEnv) -> list[Source]:
    return [HostSource(config.host)] if config.host.enabled else []
