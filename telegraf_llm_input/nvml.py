"""The NVML session: NVML initialised once per process, shared by every part that reads NVIDIA GPUs.

Beside `http.py` (the HTTP pool) as the other thing several sources share: the GPU source reads the
devices, the process source asks which processes hold GPU memory. `SourceEnv.nvml_session()` hands out
the one session; `pynvml` is imported when the session starts, not at start-up.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from telegraf_llm_input.lazy import lazy_import
from telegraf_llm_input.log import get_logger

if TYPE_CHECKING:
    import ctypes
else:
    ctypes = lazy_import("ctypes")  # ~0.6 MiB of RSS: loaded when the GPU source asks for the driver, not with GPUs off

log = get_logger("gpu")

MIB = 1024 * 1024


NVML_LIBRARY = "libnvidia-ml.so.1"
"""The name nvidia-ml-py loads on Linux (the driver installs it; no NVML on macOS)."""


def library_loads() -> bool:
    """Whether the NVIDIA driver's library is there, asked before importing pynvml: its bindings take ~20 ms to
    import, which a machine without the driver (every Mac, most Radeon boxes) would pay for nothing."""
    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return False
    return True


class NvmlSession:
    """NVML initialised once per process and shared by the GPU and process sources (`SourceEnv.nvml`).

    `available` is False when the library or driver is missing; that is said once, at info level
    (warning when the user asked for GPUs with `enabled: true`).
    """

    def __init__(self, required: bool = False):
        self._lock = threading.Lock()
        self._required = required
        self._started = False
        self.nvml: Any = None
        self.missing: str | None = None
        """Why NVML is unavailable (pynvml's words), once `start()` found it so; `doctor` says it."""
        self.others: tuple[str, ...] = ()
        """The other GPU backends in use (`amd`, ...), so the "NVML unavailable" line does not say GPU metrics are off."""
        self.driver_version: str | None = None
        self.cuda_version: str | None = None

    @property
    def available(self) -> bool:
        return self.start()

    def start(self) -> bool:
        with self._lock:
            if self._started:
                return self.nvml is not None
            self._started = True
            if "pynvml" not in sys.modules and not library_loads():
                self._say_missing("NVML Shared Library Not Found")  # pynvml's own words for it
                return False
            try:
                nvml = importlib.import_module("pynvml")
            except ImportError as exc:
                self._say_missing(f"nvidia-ml-py not importable ({exc})")
                return False
            try:
                nvml.nvmlInit()
            except nvml.NVMLError as exc:
                self._say_missing(str(exc))
                return False
            except OSError as exc:
                self._say_missing(str(exc))
                return False
            self.nvml = nvml
            self.driver_version = optional(lambda: as_text(nvml.nvmlSystemGetDriverVersion()), nvml)
            cuda = optional(nvml.nvmlSystemGetCudaDriverVersion, nvml)
            if isinstance(cuda, int) and cuda > 0:
                self.cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}"
            count = optional(nvml.nvmlDeviceGetCount, nvml)
            log.info(
                f"GPU backend: nvidia (NVML, driver {self.driver_version or '?'}, {count if count is not None else '?'} GPU(s))"
            )
            return True

    def _say_missing(self, why: str) -> None:
        self.missing = why
        level = logging.WARNING if self._required and not self.others else logging.INFO
        then = f"GPU metrics from {', '.join(self.others)}" if self.others else "no GPU metrics"
        log.log(level, f"no NVIDIA GPU: NVML unavailable ({why}); {then}")

    def process_gpu_memory(self) -> dict[int, dict[int, float]]:
        """pid -> {GPU index: MiB it holds}, from NVML's compute process lists (blocking)."""
        if not self.available:
            return {}
        nvml = self.nvml
        out: dict[int, dict[int, float]] = {}
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError:
            return {}
        for index in range(count):
            try:
                procs = nvml.nvmlDeviceGetComputeRunningProcesses(nvml.nvmlDeviceGetHandleByIndex(index))
            except nvml.NVMLError:
                continue
            for p in procs:
                used = getattr(p, "usedGpuMemory", None)
                # NVML reports "not available" (e.g. under MIG or without permission) as None or a huge value.
                if used is None or used >= 2**63:
                    used = 0
                per_gpu = out.setdefault(p.pid, {})
                per_gpu[index] = per_gpu.get(index, 0.0) + used / MIB
        return out

    def shutdown(self) -> None:
        with self._lock:
            if self.nvml is not None:
                try:
                    self.nvml.nvmlShutdown()
                except self.nvml.NVMLError:
                    pass
            self.nvml = None


def optional(call: Callable[[], Any], nvml: Any) -> Any:
    try:
        return call()
    except nvml.NVMLError:
        return None


def as_text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
