"""A fake NVML: replaces `pynvml`'s functions with a recorded 8-GPU box, for machines without a GPU.

The box: GPUs 0-5 are H100 80GB HBM3 (SXM: no fan reading, no video encoder), GPU 6 is an
RTX 4090 (no ECC, no remapped rows, has a fan and NVENC), GPU 7 falls off the bus (every call raises
NVML_ERROR_GPU_IS_LOST) when `lose(7)` is called. Values are what such boxes report under a vLLM
load. Errors are the real `pynvml.NVMLError` subclasses, so code sees exactly what NVML would raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

MIB = 1024 * 1024


@dataclass
class FakeGpu:
    index: int
    name: str
    uuid: str
    bus_id: str
    memory_total: int
    memory_used: int
    utilization: tuple[int, int] = (87, 54)
    temperature: int = 61
    power_mw: int = 512_345
    power_limit_mw: int = 700_000
    energy_mj: int = 9_876_543_210
    clocks: dict[int, int] = field(
        default_factory=lambda: {
            pynvml.NVML_CLOCK_GRAPHICS: 1980,
            pynvml.NVML_CLOCK_SM: 1980,
            pynvml.NVML_CLOCK_MEM: 2619,
            pynvml.NVML_CLOCK_VIDEO: 1755,
        }
    )
    fan: int | None = None
    pstate: int = 0
    clock_reasons: int = 0x4  # SW power cap
    ecc: tuple[int, int] | None = (0, 3)  # (uncorrected, corrected) volatile
    remapped_rows: tuple[int, int, int, int] | None = (0, 0, 0, 0)
    pcie: tuple[int, int] = (1_234, 56_789)  # (tx, rx) KB/s
    encoder: int | None = None
    decoder: int | None = 0
    compute_mode: int = pynvml.NVML_COMPUTEMODE_DEFAULT
    pcie_link: tuple[int, int] = (5, 16)
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    """(pid, usedGpuMemory bytes or None) of compute processes."""
    xid_supported: bool = True
    lost: bool = False


def h100(index: int) -> FakeGpu:
    return FakeGpu(
        index=index,
        name="NVIDIA H100 80GB HBM3",
        uuid=f"GPU-5e1d0f7a-3c2b-4e55-9a0d-8c1f2b3a4c{index:02d}",
        bus_id=f"00000000:{0x18 + 0x10 * index:02X}:00.0",
        memory_total=81_559 * MIB,
        memory_used=74_200 * MIB + index * MIB,
        temperature=58 + index,
        energy_mj=9_876_543_210 + index * 1_000_000,
    )


def rtx4090(index: int) -> FakeGpu:
    return FakeGpu(
        index=index,
        name="NVIDIA GeForce RTX 4090",
        uuid=f"GPU-0b7c9e21-6d4f-4a8b-b2c3-d1e2f3a4b5{index:02d}",
        bus_id="00000000:C1:00.0",
        memory_total=24_564 * MIB,
        memory_used=6_120 * MIB,
        utilization=(35, 20),
        temperature=66,
        power_mw=212_400,
        power_limit_mw=450_000,
        energy_mj=1_234_567_890,
        clocks={
            pynvml.NVML_CLOCK_GRAPHICS: 2520,
            pynvml.NVML_CLOCK_SM: 2520,
            pynvml.NVML_CLOCK_MEM: 10501,
            pynvml.NVML_CLOCK_VIDEO: 1965,
        },
        fan=41,
        pstate=2,
        clock_reasons=0x20 | 0x1,  # SW thermal slowdown + idle
        ecc=None,
        remapped_rows=None,
        pcie=(310, 4_020),
        encoder=3,
        decoder=0,
        pcie_link=(4, 16),
        xid_supported=False,
    )


def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)  # NVMLError.__new__ returns the matching subclass


def _not_supported() -> pynvml.NVMLError:
    return _err(pynvml.NVML_ERROR_NOT_SUPPORTED)


class FakeNvml:
    """The recorded box plus counters of what was called (to check the source stops asking)."""

    def __init__(self, gpus: list[FakeGpu] | None = None):
        self.gpus = gpus if gpus is not None else [h100(i) for i in range(6)] + [rtx4090(6), h100(7)]
        self.initialised = 0
        self.shutdowns = 0
        self.calls: dict[str, int] = {}
        self.pending_events: list[tuple[int, int]] = []
        self.registered: set[int] = set()
        self.driver_version = "550.54.15"
        self.cuda_version = 12040

    # -- test controls
    def lose(self, index: int) -> None:
        self.gpus[index].lost = True

    def xid(self, index: int, code: int) -> None:
        if index in self.registered:
            self.pending_events.append((index, code))

    def advance(self, seconds: float) -> None:
        """Time passes under load: each GPU's energy counter grows by power x time."""
        for gpu in self.gpus:
            gpu.energy_mj += int(gpu.power_mw * seconds)

    # -- pynvml replacements
    def _gpu(self, handle: Any, what: str) -> FakeGpu:
        self.calls[what] = self.calls.get(what, 0) + 1
        if not self.initialised:
            raise _err(pynvml.NVML_ERROR_UNINITIALIZED)
        gpu = self.gpus[handle.index]
        if gpu.lost:
            raise _err(pynvml.NVML_ERROR_GPU_IS_LOST)
        return gpu

    def functions(self) -> dict[str, Any]:
        def need(value: Any) -> Any:
            if value is None:
                raise _not_supported()
            return value

        def init() -> None:
            self.initialised += 1

        def shutdown() -> None:
            self.shutdowns += 1
            self.initialised = 0

        def handle(index: int) -> SimpleNamespace:
            if not self.initialised:
                raise _err(pynvml.NVML_ERROR_UNINITIALIZED)
            if not 0 <= index < len(self.gpus):
                raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            return SimpleNamespace(index=index)

        def event_wait(event_set: Any, timeout_ms: int) -> Any:
            if not self.pending_events:
                raise _err(pynvml.NVML_ERROR_TIMEOUT)
            index, code = self.pending_events.pop(0)
            return SimpleNamespace(
                device=SimpleNamespace(index=index), eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=code
            )

        def register(h: Any, types: int, event_set: Any) -> None:
            gpu = self._gpu(h, "register")
            if not gpu.xid_supported:
                raise _not_supported()
            self.registered.add(h.index)

        def ecc(h: Any, error_type: int, counter_type: int) -> int:
            gpu = self._gpu(h, "ecc")
            pair = need(gpu.ecc)
            return pair[0] if error_type == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED else pair[1]

        def procs(h: Any) -> list[SimpleNamespace]:
            gpu = self._gpu(h, "procs")
            return [
                SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
                for pid, used in gpu.processes
            ]

        def retired(h: Any) -> int:
            self._gpu(h, "retired")
            raise _not_supported()  # the fake's GPUs use row remapping (or have no ECC)

        g = self._gpu
        return {
            "nvmlInit": init,
            "nvmlShutdown": shutdown,
            "nvmlSystemGetDriverVersion": lambda: self.driver_version,
            "nvmlSystemGetCudaDriverVersion": lambda: self.cuda_version,
            "nvmlDeviceGetCount": lambda: len(self.gpus),
            "nvmlDeviceGetHandleByIndex": handle,
            "nvmlDeviceGetIndex": lambda h: h.index,
            "nvmlDeviceGetName": lambda h: g(h, "name").name,
            "nvmlDeviceGetUUID": lambda h: g(h, "uuid").uuid,
            "nvmlDeviceGetPciInfo": lambda h: SimpleNamespace(busId=g(h, "pci").bus_id.encode()),
            "nvmlDeviceGetUtilizationRates": lambda h: SimpleNamespace(
                gpu=g(h, "util").utilization[0], memory=g(h, "util").utilization[1]
            ),
            "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(
                total=g(h, "mem").memory_total,
                used=g(h, "mem").memory_used,
                free=g(h, "mem").memory_total - g(h, "mem").memory_used,
            ),
            "nvmlDeviceGetTemperature": lambda h, sensor: g(h, "temp").temperature,
            "nvmlDeviceGetPowerUsage": lambda h: g(h, "power").power_mw,
            "nvmlDeviceGetEnforcedPowerLimit": lambda h: g(h, "power_limit").power_limit_mw,
            "nvmlDeviceGetTotalEnergyConsumption": lambda h: g(h, "energy").energy_mj,
            "nvmlDeviceGetClockInfo": lambda h, kind: g(h, "clock").clocks[kind],
            "nvmlDeviceGetFanSpeed": lambda h: need(g(h, "fan").fan),
            "nvmlDeviceGetPerformanceState": lambda h: g(h, "pstate").pstate,
            "nvmlDeviceGetCurrentClocksEventReasons": lambda h: g(h, "reasons").clock_reasons,
            "nvmlDeviceGetCurrentClocksThrottleReasons": lambda h: g(h, "reasons_old").clock_reasons,
            "nvmlDeviceGetTotalEccErrors": ecc,
            "nvmlDeviceGetRemappedRows": lambda h: need(g(h, "remapped").remapped_rows),
            "nvmlDeviceGetRetiredPagesPendingStatus": retired,
            "nvmlDeviceGetPcieThroughput": lambda h, counter: g(h, "pcie").pcie[
                0 if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES else 1
            ],
            "nvmlDeviceGetEncoderUtilization": lambda h: [need(g(h, "enc").encoder), 167000],
            "nvmlDeviceGetDecoderUtilization": lambda h: [need(g(h, "dec").decoder), 167000],
            "nvmlDeviceGetComputeMode": lambda h: g(h, "compute_mode").compute_mode,
            "nvmlDeviceGetCurrPcieLinkGeneration": lambda h: g(h, "pcie_gen").pcie_link[0],
            "nvmlDeviceGetCurrPcieLinkWidth": lambda h: g(h, "pcie_width").pcie_link[1],
            "nvmlDeviceGetComputeRunningProcesses": procs,
            "nvmlEventSetCreate": lambda: SimpleNamespace(kind="event_set"),
            "nvmlEventSetFree": lambda s: None,
            "nvmlDeviceRegisterEvents": register,
            "nvmlEventSetWait_v2": event_wait,
        }

    def install(self, monkeypatch) -> FakeNvml:
        for name, fn in self.functions().items():
            assert hasattr(pynvml, name), name  # only replace what the real binding has
            monkeypatch.setattr(pynvml, name, fn)
        return self


def install_missing_library(monkeypatch) -> None:
    """NVML as on a machine without the NVIDIA driver: nvmlInit fails with LIBRARY_NOT_FOUND."""

    def init() -> None:
        raise _err(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", init)
