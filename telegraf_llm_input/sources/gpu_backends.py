"""`llm_gpu` from backends other than NVML: AMD and Intel sysfs on Linux, `ioreg` on Apple Silicon.

Every backend reports the same field names as NVML's, so one dashboard serves every machine, plus a
`vendor` tag. A field a backend cannot read is absent, never 0.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import psutil

from telegraf_llm_input.config.gpu import GpuConfig
from telegraf_llm_input.lazy import lazy_import
from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sources import gpu_amd, gpu_intel
from telegraf_llm_input.sources.base import GatherContext
from telegraf_llm_input.sources.gpu_sysfs import DrmCard, EnergyRate, find_cards, read_fields

if TYPE_CHECKING:
    from telegraf_llm_input.sources import gpu_apple
else:
    gpu_apple = lazy_import("telegraf_llm_input.sources.gpu_apple")  # macOS only (plistlib and all)

log = get_logger("gpu")

SYSFS_BACKENDS: dict[str, ModuleType] = {gpu_amd.VENDOR: gpu_amd, gpu_intel.VENDOR: gpu_intel}


class SysfsGpuSource:
    """The DRM cards of one vendor (amdgpu, or i915/xe), read from sysfs each gather."""

    def __init__(self, backend: ModuleType, cards: list[DrmCard], config: GpuConfig):
        self._backend = backend
        self._fields = [row for row in backend.FIELDS if config.keeps(row.field)]
        """The backend's table less the fields `gpu.exclude` leaves out."""
        self._keeps = config.keeps
        self.name = f"gpu:{backend.VENDOR}"
        self._cards = cards
        self._tags = {c.index: self._card_tags(c) for c in cards}
        self._energy = {c.index: EnergyRate() for c in cards}
        self._state = StateLog(log)

    def _card_tags(self, card: DrmCard) -> dict[str, str]:
        tags = {"index": str(card.index), "vendor": self._backend.VENDOR}
        if card.pci_bus_id:
            tags["pci_bus_id"] = card.pci_bus_id
        tags.update(self._backend.card_tags(card))
        return tags

    def _sample(self, time_ns: int) -> list[Metric]:
        metrics = []
        for card in self._cards:
            tags = self._tags[card.index]
            if not card.present:  # unbound, or fallen off the bus
                self._state.fail(
                    ("lost", card.index),
                    f"{self.name}: card{card.index} ({card.pci_bus_id or '?'}) is gone from sysfs",
                    level=logging.ERROR,
                )
                metrics.append(Metric("llm_gpu", tags, {"gpu_lost": 1}, time_ns))
                continue
            self._state.ok(("lost", card.index), f"{self.name}: card{card.index} is back")
            fields = read_fields(card, self._fields, self._backend.HWMON_NAMES)
            power = self._energy[card.index].update(time.monotonic(), fields.get("energy_total_j"))
            if "power_draw_w" not in fields and power is not None and self._keeps("power_draw_w"):
                fields["power_draw_w"] = power
            fields["gpu_lost"] = 0
            metrics.append(Metric("llm_gpu", tags, fields, time_ns))
        return metrics

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        return await asyncio.to_thread(self._sample, ctx.time_ns)

    async def close(self) -> None:
        return None


class AppleGpuSource:
    """Apple Silicon: one `ioreg` run per gather (a few ms), parsed with plistlib."""

    name = "gpu:apple"

    def __init__(self, executable: str = "ioreg", keeps: Callable[[str], bool] = lambda name: True):
        self._executable = executable
        self._keeps = keeps
        self._memory_total = psutil.virtual_memory().total

    def _sample(self, time_ns: int) -> list[Metric]:
        try:
            gpus = gpu_apple.parse_ioreg(gpu_apple.run_ioreg(self._executable), self._memory_total)
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"ioreg: {exc}") from None
        return [
            Metric(
                "llm_gpu",
                {**g.tags, "vendor": gpu_apple.VENDOR},
                {k: v for k, v in g.fields.items() if self._keeps(k)},
                time_ns,
            )
            for g in gpus
        ]

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        return await asyncio.to_thread(self._sample, ctx.time_ns)

    async def close(self) -> None:
        return None


def build(gpu: GpuConfig) -> list[SysfsGpuSource | AppleGpuSource]:
    """The non-NVML sources `gpu.backends` asks for and that find hardware (explicit ones say when not)."""
    sources: list[SysfsGpuSource | AppleGpuSource] = []
    level = logging.WARNING if gpu.enabled is True else logging.INFO
    for vendor, backend in SYSFS_BACKENDS.items():
        if not gpu.wants(vendor):
            continue
        cards = find_cards(gpu.sysfs_root, backend.PCI_VENDOR)
        if cards:
            sources.append(SysfsGpuSource(backend, cards, gpu))
            found = ", ".join(f"card{c.index}" + (f" {c.pci_bus_id}" if c.pci_bus_id else "") for c in cards)
            log.info(f"GPU backend: {vendor} ({gpu.sysfs_root}/class/drm: {found})")
        elif gpu.explicit(vendor):
            log.log(
                level,
                f"gpu.backends: {vendor}: no {vendor.upper()} card under "
                f"{gpu.sysfs_root}/class/drm; no {vendor} GPU metrics",
            )
    if gpu.explicit("apple") or (gpu.wants("apple") and sys.platform == "darwin"):
        executable = shutil.which("ioreg")
        if executable:
            sources.append(AppleGpuSource(executable, gpu.keeps))
            log.info(f"GPU backend: apple (ioreg: {executable})")
        else:
            log.log(level, "gpu.backends: apple: `ioreg` not found on PATH; no Apple GPU metrics")
    return sources
