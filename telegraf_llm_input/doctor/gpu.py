"""Which GPU backend is used and why: the GPU sources built and read once, as the agent would."""

from __future__ import annotations

import asyncio
import sys
import time

from telegraf_llm_input.config import Config
from telegraf_llm_input.doctor.report import Check, no, note, ok
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sources import gpu as gpu_source
from telegraf_llm_input.sources.base import GatherContext, SourceEnv

AREA = "GPU"


async def check(config: Config, env: SourceEnv) -> tuple[list[Check], bool]:
    """What to say, and whether any GPU is read (per-process GPU memory is then worth checking)."""
    if config.gpu.enabled is False:
        return [note(AREA, "off in the config (gpu.enabled: false)")], False
    sources = gpu_source.build(config, env)
    ctx = GatherContext(time_ns=time.time_ns(), deadline_s=10.0)
    results = await asyncio.gather(*(s.gather(ctx) for s in sources), return_exceptions=True)
    for s in sources:
        if s.name != "gpu":  # the NVML source closes the shared session, which the process check still needs
            await s.close()
    by_source: dict[str, list[Metric]] = {}
    checks: list[Check] = []
    for s, result in zip(sources, results):
        if isinstance(result, BaseException):
            checks.append(no(AREA, f"{s.name}: cannot be read: {result}", "see docs/gpu.md for what it needs"))
            continue
        by_source[s.name] = [m for m in result if m.measurement == "llm_gpu"]
    nvml = env.nvml
    why_not_nvml = f"NVML unavailable ({nvml.missing})" if nvml is not None and nvml.missing else None
    if config.gpu.wants("nvidia") and nvml is not None and nvml.available:
        cards = _cards(by_source.get("gpu", []))
        checks.append(ok(AREA, f"nvidia: NVML, driver {nvml.driver_version or '?'}: {cards or 'no GPU listed'}"))
    for name, metrics in by_source.items():
        if name == "gpu" or not metrics:
            continue
        vendor = name.removeprefix("gpu:")
        how = "ioreg" if vendor == "apple" else f"{vendor.upper()} sysfs ({config.gpu.sysfs_root}/class/drm)"
        lead = f"{why_not_nvml} -> " if why_not_nvml else ""
        checks.append(ok(AREA, f"{vendor}: {lead}{how} found {_cards(metrics)}"))
    used = any(c.status == "ok" for c in checks)
    if not used:
        where = (
            "ioreg found no GPU"
            if sys.platform == "darwin"
            else (f"no AMD or Intel card under {config.gpu.sysfs_root}/class/drm")
        )
        text = f"no GPU: {why_not_nvml or 'NVML not asked for'}; {where}"
        if config.gpu.enabled is True:
            checks.append(
                no(AREA, text, "install the GPU driver (NVIDIA: libnvidia-ml.so.1), or set gpu.enabled: auto")
            )
        else:
            checks.append(note(AREA, text + " (no GPU metrics; fine on a CPU-only machine)"))
    return checks, used


def _cards(metrics: list[Metric]) -> str:
    names = []
    for m in metrics:
        index = m.tags.get("index", "?")
        extra = ", ".join(v for v in (m.tags.get("name"), m.tags.get("pci_bus_id")) if v)
        names.append(f"card{index}" + (f" ({extra})" if extra else ""))
    return ", ".join(names)
