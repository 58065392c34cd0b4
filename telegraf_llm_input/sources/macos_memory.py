"""macOS memory pressure, as the kernel rates it: `sysctl -n kern.memorystatus_vm_pressure_level`.

macOS has no PSI; this is what Activity Monitor's memory-pressure graph colours by: 1 normal, 2 warning,
4 critical. Readable without root. Swap and memory come from psutil (vm.swapusage, vm_stat's numbers).
"""

from __future__ import annotations

import shutil
import subprocess

SYSCTL_KEY = "kern.memorystatus_vm_pressure_level"
LEVELS = (1, 2, 4)


def parse_pressure_level(text: str) -> int | None:
    value = text.strip()
    return int(value) if value.isdigit() and int(value) in LEVELS else None


def read_pressure_level(timeout_s: float = 2.0) -> int | None:
    sysctl = shutil.which("sysctl") or shutil.which("/usr/sbin/sysctl")
    if sysctl is None:
        return None
    try:
        done = subprocess.run([sysctl, "-n", SYSCTL_KEY], capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_pressure_level(done.stdout.decode(errors="replace")) if done.returncode == 0 else None
