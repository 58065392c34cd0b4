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
from typing import TYPE_CHECKING, Any

import psutil

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


def cpu_busy_percent(prev: Any, now: Any) -> float | None:
    """Busy share of all cores between two `psutil.cpu_times()` readings, as psutil's `cpu_percent` computes it
    (idle and iowait are idle; Linux's guest times are inside user/nice already); None without time between them."""

    def total(t: Any) -> float:
        return sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    def idle(t: Any) -> float:
        return t.idle + getattr(t, "iowait", 0.0)

    all_delta = total(now) - total(prev)
    if all_delta <= 0:
        return None
    busy_delta = all_delta - (idle(now) - idle(prev))
    return min(100.0, max(0.0, busy_delta / all_delta * 100))


class HostSource:
    """`cpu_percent` is the machine's own CPU between two gathers: none in the first (which would measure the
    agent's own start-up), as Telegraf's cpu input gives nothing until it has an interval."""

    name = "host"

    def __init__(self, config: HostConfig):
        self._config = config
        self._prev_swap: tuple[float, int, int] | None = None
        self._prev_cpu: Any = None
        """`psutil.cpu_times()` of the previous gather (kept here, not psutil's module-wide last reading)."""

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

    def _cpu_percent(self) -> float | None:
        now = psutil.cpu_times()
        prev, self._prev_cpu = self._prev_cpu, now
        return None if prev is None else cpu_busy_percent(prev, now)

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        # The model disk's statvfs can hang (a dead network mount): a thread keeps it from freezing the loop. The
        # rest reads /proc (or sysctl), which never waits on a device, on the loop: a thread hop costs ~0.1 ms CPU,
        # as much as the reads themselves.
        disk = await asyncio.to_thread(self._disk) if self._config.model_dir else None
        return [self._sample(ctx.time_ns, disk)]

    async def close(self) -> None:
        return None


def build(config: Config, env: SourceEnv) -> list[Source]:
    return [HostSource(config.host)] if config.host.enabled else []
