"""Apple Silicon GPUs from `ioreg -r -d 1 -w 0 -c IOAccelerator -a`: a plist, no sudo.

Each IOAccelerator entry (class AGXAccelerator…) carries `model` ("Apple M1 Pro"), `gpu-core-count` and a
`PerformanceStatistics` dictionary: "Device Utilization %", "Renderer Utilization %", "Tiler Utilization %",
"In use system memory" and "Alloc system memory" (bytes). The GPU shares the machine's memory (unified
memory), so `memory_total_mib` is the physical memory. Power and energy are not in the registry: Apple
exposes them through the private IOReport framework or `powermetrics` (root), so they are absent.
"""

from __future__ import annotations

import plistlib
import subprocess
from dataclasses import dataclass
from typing import Any
from xml.parsers.expat import ExpatError

from telegraf_llm_input.sources.gpu_sysfs import mib

VENDOR = "apple"
IOREG_ARGS = ("-r", "-d", "1", "-w", "0", "-c", "IOAccelerator", "-a")
IOREG_TIMEOUT_S = 5.0


@dataclass
class AppleGpu:
    tags: dict[str, str]
    fields: dict[str, Any]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):  # some registry strings are data blobs ending in NUL
        value = value.rstrip(b"\0").decode(errors="replace")
    return value.strip() or None if isinstance(value, str) else None


def parse_ioreg(data: bytes, memory_total_bytes: int | None = None) -> list[AppleGpu]:
    """The GPUs in one `ioreg … -a` answer; raises ValueError when it is no plist of IOAccelerator entries."""
    try:
        entries = plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError, ExpatError) as exc:
        raise ValueError(f"ioreg output is not a plist ({exc})") from None
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise ValueError("ioreg output is not a list of IOAccelerator entries")
    gpus: list[AppleGpu] = []
    for entry in entries:
        stats = entry.get("PerformanceStatistics") if isinstance(entry, dict) else None
        if not isinstance(stats, dict):
            continue
        tags = {"index": str(len(gpus))}
        if (model := _text(entry.get("model"))) is not None:
            tags["name"] = model
        if (cores := _int(entry.get("gpu-core-count"))) is not None:
            tags["gpu_cores"] = str(cores)
        used = _int(stats.get("In use system memory"))
        fields = {
            "utilization_gpu": _int(stats.get("Device Utilization %")),
            "utilization_renderer": _int(stats.get("Renderer Utilization %")),
            "utilization_tiler": _int(stats.get("Tiler Utilization %")),
            "memory_used_mib": mib(used),
            "memory_allocated_mib": mib(_int(stats.get("Alloc system memory"))),
            "memory_total_mib": mib(memory_total_bytes),
            "memory_free_mib": mib(memory_total_bytes - used)
            if memory_total_bytes is not None and used is not None
            else None,
        }
        gpus.append(AppleGpu(tags, {k: v for k, v in fields.items() if v is not None}))
    return gpus


def run_ioreg(executable: str = "ioreg", timeout_s: float = IOREG_TIMEOUT_S) -> bytes:
    """`ioreg`'s plist (blocking). Raises OSError, or RuntimeError with a one-line reason."""
    try:
        done = subprocess.run([executable, *IOREG_ARGS], capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"ioreg did not answer within {timeout_s:g} s") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"ioreg exited {done.returncode}: {err[-1] if err else 'no message'}")
    return done.stdout
