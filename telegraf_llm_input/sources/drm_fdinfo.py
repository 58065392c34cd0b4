"""Per-process GPU use from DRM fdinfo (`/proc/<pid>/fdinfo/<fd>` of an open `/dev/dri/*`), no root needed
for the agent's own user's processes.

The format is the kernel's Documentation/gpu/drm-usage-stats.rst: `drm-driver`, `drm-pdev`, `drm-client-id`
(one open DRM file; dup'ed and inherited fds share it, so clients are counted once), `drm-engine-<name>: <ns>
ns` busy time, `drm-cycles-<name>`/`drm-total-cycles-<name>` (xe), `drm-engine-capacity-<name>`, and memory
as `drm-memory-<region>` (legacy) or `drm-resident-<region>`/`drm-total-<region>` in bytes, KiB or MiB. Works
for amdgpu, i915, xe and any driver that follows it. NVIDIA's memory comes from NVML instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from telegraf_llm_input.sources.gpu_sysfs import AMD_VENDOR, INTEL_VENDOR, find_cards

PROC_ROOT = Path("/proc")
MIB = 1024 * 1024
UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}
LOCAL_REGIONS = ("vram", "local")
"""Device-memory regions: amdgpu `vram`, xe `vram0`, i915 `local0`; `gtt`, `system0`, `cpu` are host memory."""
COMPUTE_ENGINES = ("gfx", "compute", "render", "rcs", "ccs")
"""Engines a model's kernels run on: amdgpu gfx/compute, i915 render/compute, xe rcs/ccs (cycles)."""
SKIP_DRIVERS = ("nvidia-drm",)
"""Counted by NVML already."""


@dataclass
class DrmClient:
    driver: str
    key: tuple[str, str] | None
    """(drm-pdev, drm-client-id): the dedupe key; None when the driver gives no client id."""
    engines_ns: dict[str, int] = field(default_factory=dict)
    cycles: dict[str, tuple[int, int]] = field(default_factory=dict)
    """engine -> (busy cycles, total cycles) (xe)."""
    capacity: dict[str, int] = field(default_factory=dict)
    vram_bytes: int | None = None


def _amount(value: str) -> int | None:
    number, _, unit = value.strip().partition(" ")
    factor = UNITS.get(unit.strip())
    if factor is None or not number.isdigit():
        return None
    return int(number) * factor


def parse_fdinfo(text: str) -> DrmClient | None:
    """One fdinfo file; None when it is no DRM client (no `drm-driver`)."""
    keys: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.startswith("drm-"):
            keys[key.strip()] = value.strip()
    driver = keys.get("drm-driver")
    if not driver:
        return None
    client_id = keys.get("drm-client-id")
    client = DrmClient(driver, (keys.get("drm-pdev", ""), client_id) if client_id else None)
    regions: dict[str, dict[str, int]] = {}
    for key, value in keys.items():
        name = key[4:]
        if name.startswith("engine-capacity-"):
            if value.isdigit() and int(value) > 0:
                client.capacity[name[16:]] = int(value)
        elif name.startswith("engine-"):
            ns = value.removesuffix("ns").strip()
            if ns.isdigit():
                client.engines_ns[name[7:]] = int(ns)
        elif name.startswith("total-cycles-"):
            continue
        elif name.startswith("cycles-"):
            total = keys.get(f"drm-total-cycles-{name[7:]}", "")
            if value.isdigit() and total.isdigit():
                client.cycles[name[7:]] = (int(value), int(total))
        else:
            kind, _, region = name.partition("-")
            if kind in ("memory", "resident", "total") and region.startswith(LOCAL_REGIONS):
                amount = _amount(value)
                if amount is not None:
                    regions.setdefault(region, {})[kind] = amount
    if regions:
        # resident is what sits in VRAM now; drm-memory- is the older name of the same; total may be swapped out
        client.vram_bytes = sum(r.get("resident", r.get("memory", r.get("total", 0))) for r in regions.values())
    return client


def process_clients(pid: int, proc_root: Path = PROC_ROOT) -> list[DrmClient] | None:
    """The DRM clients of one process, each once; None when its fds cannot be read (another user's)."""
    fd_dir = proc_root / str(pid) / "fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return None
    clients = []
    for fd in fds:
        try:
            if not os.readlink(fd_dir / fd).startswith("/dev/dri/"):
                continue
            text = (proc_root / str(pid) / "fdinfo" / fd).read_text()
        except OSError:  # closed meanwhile
            continue
        client = parse_fdinfo(text)
        if client is not None and client.driver not in SKIP_DRIVERS:
            clients.append(client)
    return clients


@dataclass
class DrmSample:
    vram_mib: float | None
    busy_percent: float | None


class DrmUsage:
    """GPU memory and busy % of a set of processes from their DRM clients, over the time between samples."""

    def __init__(self, proc_root: Path | None = None):
        self._proc_root = proc_root
        self._prev: tuple[float, dict] | None = None

    def sample(self, pids: Iterable[int], now_s: float | None = None) -> DrmSample:
        now_s = time.monotonic() if now_s is None else now_s
        seen: dict[tuple, DrmClient] = {}
        readable = False
        for pid in sorted(pids):
            clients = process_clients(pid, self._proc_root or PROC_ROOT)
            if clients is None:
                continue
            readable = True
            for n, client in enumerate(clients):
                seen.setdefault(client.key or (f"pid{pid}", str(n)), client)
        if not readable or not seen:
            self._prev = None
            return DrmSample(None, None)
        vram = [c.vram_bytes for c in seen.values() if c.vram_bytes is not None]
        prev, self._prev = self._prev, (now_s, seen)
        return DrmSample(
            sum(vram) / MIB if vram else None, busy_percent(prev, (now_s, seen)) if prev is not None else None
        )


def busy_percent(prev: tuple[float, dict], now: tuple[float, dict]) -> float | None:
    """Busiest compute engine's share of the interval, summed over clients seen both times (pure)."""
    wall_ns = (now[0] - prev[0]) * 1e9
    if wall_ns <= 0:
        return None
    per_engine: dict[str, float] = {}
    found = False
    for key, client in now[1].items():
        old = prev[1].get(key)
        if old is None:  # a client opened within the interval: no baseline
            continue
        for engine, ns in client.engines_ns.items():
            if engine in COMPUTE_ENGINES and engine in old.engines_ns:
                found = True
                # Counters may dip and catch up (drm-usage-stats): a dip counts as no time.
                share = max(0, ns - old.engines_ns[engine]) / (wall_ns * client.capacity.get(engine, 1))
                per_engine[engine] = per_engine.get(engine, 0.0) + share
        for engine, (busy, total) in client.cycles.items():
            if engine in COMPUTE_ENGINES and engine in old.cycles:
                found = True
                d_total = total - old.cycles[engine][1]
                if d_total > 0:
                    share = max(0, busy - old.cycles[engine][0]) / (d_total * client.capacity.get(engine, 1))
                    per_engine[engine] = per_engine.get(engine, 0.0) + share
    if not found:
        return None
    return min(100.0, 100.0 * max(per_engine.values(), default=0.0))


def wanted(gpu_config, platform: str) -> bool:
    """fdinfo is read on Linux when `gpu.backends` names AMD or Intel, or (`auto`) such a card is there:
    an NVIDIA-only box does not pay for scanning its server's fds."""
    if not platform.startswith("linux") or gpu_config.enabled is False:
        return False
    if gpu_config.explicit("amd") or gpu_config.explicit("intel"):
        return True
    return "auto" in gpu_config.backends and any(
        find_cards(gpu_config.sysfs_root, vendor) for vendor in (AMD_VENDOR, INTEL_VENDOR)
    )
