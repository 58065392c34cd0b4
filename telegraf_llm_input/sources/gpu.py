"""`llm_gpu` (and optionally Telegraf's `nvidia_smi`): the GPU under the model, read from NVML in-process.

Other vendors (AMD, Intel, Apple) are backends in gpu_backends.py with the same field names; this module
builds them all from `gpu.backends`.

Telegraf's nvidia_smi input spawns `nvidia-smi -q -x` every interval; NVML calls from this process
cost a fraction of that and give more (energy counter, throttle reasons, XIDs). No GPU is a normal
machine: NVML missing means one info line and a source that returns nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telegraf_llm_input.config import Config
from telegraf_llm_input.config.gpu import GpuConfig
from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import Metric, clean_fields
from telegraf_llm_input.nvml import NvmlSession, as_text, optional
from telegraf_llm_input.sources import gpu_backends
from telegraf_llm_input.sources.base import GatherContext, Source, SourceEnv

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config

log = get_logger("gpu")

MIB = 1024 * 1024
MAX_EVENTS_PER_GATHER = 256
"""Bound on XID events drained per gather, so an event storm cannot stall the thread."""

# Clock-event ("throttle") reason bits, from nvml.h (nvmlClocksEventReason*/nvmlClocksThrottleReason*).
THROTTLE_BITS: dict[str, int] = {
    "throttle_idle": 0x1,
    "throttle_power_cap": 0x4,  # SwPowerCap: held under the power limit
    "throttle_hw_slowdown": 0x8,  # HwSlowdown: external signal or power brake
    "throttle_sync_boost": 0x10,
    "throttle_thermal": 0x20 | 0x40,  # SwThermalSlowdown | HwThermalSlowdown
    "throttle_power_brake": 0x80,  # HwPowerBrakeSlowdown
}

COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}
PSTATE_UNKNOWN = 32


class GpuLost(Exception):
    pass


@dataclass
class GpuDevice:
    """One GPU: its handle, the tags that never change, and the calls it turned out not to support."""

    index: int
    handle: Any
    tags: dict[str, str]
    unsupported: set[str] = field(default_factory=set)
    xid_registered: bool = False
    xid_total: int = 0
    xid_last: int | None = None
    lost: bool = False


Call = Callable[[Any, Any], Any]
"""(the pynvml module, a device handle) -> one NVML reading."""


def nvml(function: str, *constants: str) -> Call:
    """pynvml's `function(handle, *constants)`, both looked up when called (an older binding lacks some)."""
    if not constants:
        return lambda n, h: getattr(n, function)(h)
    return lambda n, h: getattr(n, function)(h, *[getattr(n, c) for c in constants])


CALLS: dict[str, tuple[Call, ...]] = {
    "util": (nvml("nvmlDeviceGetUtilizationRates"),),
    "mem": (nvml("nvmlDeviceGetMemoryInfo"),),
    "temp": (nvml("nvmlDeviceGetTemperature", "NVML_TEMPERATURE_GPU"),),
    "power": (nvml("nvmlDeviceGetPowerUsage"),),
    "power_limit": (nvml("nvmlDeviceGetEnforcedPowerLimit"),),
    "energy": (nvml("nvmlDeviceGetTotalEnergyConsumption"),),
    "clock_sm": (nvml("nvmlDeviceGetClockInfo", "NVML_CLOCK_SM"),),
    "clock_mem": (nvml("nvmlDeviceGetClockInfo", "NVML_CLOCK_MEM"),),
    "fan": (nvml("nvmlDeviceGetFanSpeed"),),
    "pstate": (nvml("nvmlDeviceGetPerformanceState"),),
    "clock_events": (  # drivers before 535 only know the older name
        nvml("nvmlDeviceGetCurrentClocksEventReasons"),
        nvml("nvmlDeviceGetCurrentClocksThrottleReasons"),
    ),
    "ecc_unc": (nvml("nvmlDeviceGetTotalEccErrors", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC"),),
    "ecc_corr": (nvml("nvmlDeviceGetTotalEccErrors", "NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_VOLATILE_ECC"),),
    "rows_pending": (  # Ampere and later remap rows (pending: the third item); older GPUs retire pages
        lambda n, h: 1 if n.nvmlDeviceGetRemappedRows(h)[2] else 0,
        nvml("nvmlDeviceGetRetiredPagesPendingStatus"),
    ),
    # Each PCIe reading samples for ~20 ms inside the driver: wall time in this thread, not CPU.
    "pcie_tx": (nvml("nvmlDeviceGetPcieThroughput", "NVML_PCIE_UTIL_TX_BYTES"),),
    "pcie_rx": (nvml("nvmlDeviceGetPcieThroughput", "NVML_PCIE_UTIL_RX_BYTES"),),
    "encoder": (nvml("nvmlDeviceGetEncoderUtilization"),),
    "decoder": (nvml("nvmlDeviceGetDecoderUtilization"),),
    # nvidia_smi compatibility only
    "compute_mode": (nvml("nvmlDeviceGetComputeMode"),),
    "clock_graphics": (nvml("nvmlDeviceGetClockInfo", "NVML_CLOCK_GRAPHICS"),),
    "clock_video": (nvml("nvmlDeviceGetClockInfo", "NVML_CLOCK_VIDEO"),),
    "pcie_gen": (nvml("nvmlDeviceGetCurrPcieLinkGeneration"),),
    "pcie_width": (nvml("nvmlDeviceGetCurrPcieLinkWidth"),),
}
"""NVML reading -> the functions that give it, newest first (the next is tried when one gives nothing)."""


def _same(value: Any) -> Any:
    return value


def _milli(value: Any) -> float:
    return float(value / 1000.0)


def _mib(value: Any) -> float:
    return float(value / MIB)


def _pstate(value: Any) -> Any:
    return None if value == PSTATE_UNKNOWN else value


def _bits(mask: int) -> Callable[[Any], int]:
    return lambda reasons: 1 if reasons & mask else 0


@dataclass(frozen=True)
class NvmlField:
    """One field from NVML: which reading it comes from and how that converts to the field's unit."""

    field: str
    call: str
    """A key of CALLS (readings several fields share are made once per gather)."""
    convert: Callable[[Any], Any] = _same
    """The reading -> the field's value; None: no field."""


LLM_GPU: tuple[NvmlField, ...] = (
    NvmlField("utilization_gpu", "util", lambda u: u.gpu),
    NvmlField("utilization_memory", "util", lambda u: u.memory),
    NvmlField("memory_total_mib", "mem", lambda m: _mib(m.total)),
    NvmlField("memory_used_mib", "mem", lambda m: _mib(m.used)),
    NvmlField("memory_free_mib", "mem", lambda m: _mib(m.free)),
    NvmlField("temperature_gpu", "temp"),
    NvmlField("power_draw_w", "power", _milli),  # mW
    NvmlField("power_limit_w", "power_limit", _milli),  # mW
    NvmlField("energy_total_j", "energy", _milli),  # mJ
    NvmlField("clocks_sm_mhz", "clock_sm"),
    NvmlField("clocks_mem_mhz", "clock_mem"),
    NvmlField("fan_speed", "fan"),
    NvmlField("pstate", "pstate", _pstate),
    NvmlField("ecc_uncorrected_volatile", "ecc_unc"),
    NvmlField("ecc_corrected_volatile", "ecc_corr"),
    NvmlField("retired_or_remapped_rows_pending", "rows_pending"),
    NvmlField("pcie_tx_kib_s", "pcie_tx"),
    NvmlField("pcie_rx_kib_s", "pcie_rx"),
    NvmlField("encoder_util", "encoder", lambda e: e[0]),  # (utilisation, sampling period)
    NvmlField("decoder_util", "decoder", lambda d: d[0]),
    *(NvmlField(name, "clock_events", _bits(mask)) for name, mask in THROTTLE_BITS.items()),
)
"""`llm_gpu` from NVML, in the order written (schema/gpu.py documents each; a test holds them together)."""

NVIDIA_SMI: tuple[NvmlField, ...] = (
    NvmlField("fan_speed", "fan"),
    NvmlField("memory_total", "mem", lambda m: m.total // MIB),
    NvmlField("memory_used", "mem", lambda m: m.used // MIB),
    NvmlField("memory_free", "mem", lambda m: m.free // MIB),
    NvmlField("temperature_gpu", "temp"),
    NvmlField("utilization_gpu", "util", lambda u: u.gpu),
    NvmlField("utilization_memory", "util", lambda u: u.memory),
    NvmlField("utilization_encoder", "encoder", lambda e: e[0]),
    NvmlField("utilization_decoder", "decoder", lambda d: d[0]),
    NvmlField("pcie_link_gen_current", "pcie_gen"),
    NvmlField("pcie_link_width_current", "pcie_width"),
    NvmlField("clocks_current_graphics", "clock_graphics"),
    NvmlField("clocks_current_sm", "clock_sm"),
    NvmlField("clocks_current_memory", "clock_mem"),
    NvmlField("clocks_current_video", "clock_video"),
    NvmlField("power_draw", "power", _milli),
)
"""Telegraf inputs.nvidia_smi's fields under its names and integer units (after `driver_version`,
`cuda_version`)."""


_WAYS: dict[str, tuple[tuple[str, Call], ...]] = {
    key: tuple((f"{key}#{i}" if i else key, way) for i, way in enumerate(ways)) for key, ways in CALLS.items()
}
"""Each reading's functions under the names `GpuDevice.unsupported` keeps them by."""


class Readings:
    """One gather's NVML readings of one GPU, each made once and only when a field asks for it.

    A reading NVML says the GPU does not support is not asked again (`dev.unsupported`).
    Raises GpuLost when NVML says the GPU fell off the bus.
    """

    def __init__(self, nvml: Any, dev: GpuDevice):
        self._nvml = nvml
        self._dev = dev
        self._got: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        got = self._got
        if key in got:
            return got[key]
        value = None
        for name, way in _WAYS[key]:
            value = self._call(name, way)
            if value is not None:
                break
        got[key] = value
        return value

    def _call(self, name: str, way: Call) -> Any:
        nvml, dev = self._nvml, self._dev
        if name in dev.unsupported:
            return None
        try:
            return way(nvml, dev.handle)
        except AttributeError:  # an older nvidia-ml-py without this function
            dev.unsupported.add(name)
            return None
        except nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == nvml.NVML_ERROR_GPU_IS_LOST:
                raise GpuLost(str(exc)) from exc
            if code in (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_FUNCTION_NOT_FOUND):
                dev.unsupported.add(name)  # it will not become supported: stop asking
            return None

    def fields(self, table: Sequence[NvmlField]) -> dict[str, Any]:
        """The table's fields, in its order; a reading the GPU does not give, or converts to None, is no field."""
        out: dict[str, Any] = {}
        for row in table:
            raw = self[row.call]
            if raw is not None:
                value = row.convert(raw)
                if value is not None:
                    out[row.field] = value
        return out


def nvidia_smi_metric(
    readings: Readings, tags: dict[str, str], driver: str | None, cuda: str | None, time_ns: int
) -> Metric:
    """The same readings under Telegraf inputs.nvidia_smi's measurement, tags, names and units."""
    smi_tags = {"index": tags["index"]}
    for key in ("name", "uuid"):
        if key in tags:
            smi_tags[key] = tags[key]
    pstate = readings["pstate"]
    if pstate is not None and pstate != PSTATE_UNKNOWN:
        smi_tags["pstate"] = f"P{pstate}"
    if readings["compute_mode"] in COMPUTE_MODES:
        smi_tags["compute_mode"] = COMPUTE_MODES[readings["compute_mode"]]
    fields = clean_fields({"driver_version": driver, "cuda_version": cuda}) | readings.fields(NVIDIA_SMI)
    return Metric("nvidia_smi", smi_tags, fields, time_ns)


class GpuSource:
    name = "gpu"

    def __init__(self, config: GpuConfig, session: NvmlSession):
        self._config = config
        self._session = session
        self._devices: list[GpuDevice] | None = None
        self._event_set: Any = None
        self._state = StateLog(log)
        self._fields = [row for row in LLM_GPU if config.keeps(row.field)]
        """The table less the fields `gpu.exclude` leaves out (their NVML calls are not made)."""

    def _open(self) -> list[GpuDevice]:
        nvml = self._session.nvml
        count = nvml.nvmlDeviceGetCount()
        wanted = set(self._config.indices) if self._config.indices is not None else None
        devices = []
        for index in range(count):
            if wanted is not None and index not in wanted:
                continue
            tags = {"index": str(index), "vendor": "nvidia"}
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except nvml.NVMLError as exc:
                devices.append(GpuDevice(index, None, tags, lost=True))
                self._state.fail(("lost", index), f"GPU {index}: {exc}", level=logging.ERROR)
                continue
            for key, call in (
                ("uuid", nvml.nvmlDeviceGetUUID),
                ("name", nvml.nvmlDeviceGetName),
                ("pci_bus_id", lambda hd: nvml.nvmlDeviceGetPciInfo(hd).busId),
            ):
                value = optional(lambda: call(handle), nvml)  # noqa: B023 (called here, inside the loop)
                if value:
                    tags[key] = as_text(value)
            devices.append(GpuDevice(index, handle, tags))
        if wanted is not None and (missing := wanted - {d.index for d in devices}):
            log.warning(f"gpu.indices: no GPU with index {sorted(missing)} (this machine has {count})")
        self._register_xid(nvml, devices)
        return devices

    def _register_xid(self, nvml: Any, devices: list[GpuDevice]) -> None:
        try:
            self._event_set = nvml.nvmlEventSetCreate()
        except (nvml.NVMLError, AttributeError):
            return
        for dev in devices:
            if dev.handle is None:
                continue
            try:
                nvml.nvmlDeviceRegisterEvents(dev.handle, nvml.nvmlEventTypeXidCriticalError, self._event_set)
                dev.xid_registered = True
            except nvml.NVMLError:
                pass

    def _drain_xids(self, nvml: Any, devices: list[GpuDevice]) -> None:
        if self._event_set is None:
            return
        by_index = {d.index: d for d in devices}
        for _ in range(MAX_EVENTS_PER_GATHER):
            try:
                event = nvml.nvmlEventSetWait_v2(self._event_set, 0)
            except nvml.NVMLError:  # Timeout: nothing pending
                return
            if not event.eventType & nvml.nvmlEventTypeXidCriticalError:
                continue
            try:
                dev = by_index.get(nvml.nvmlDeviceGetIndex(event.device))
            except nvml.NVMLError:
                dev = None
            if dev is not None:
                dev.xid_total += 1
                dev.xid_last = int(event.eventData)

    def _sample(self, time_ns: int) -> list[Metric]:
        if not self._session.available:
            return []
        nvml = self._session.nvml
        if self._devices is None:
            self._devices = self._open()
        self._drain_xids(nvml, self._devices)
        metrics: list[Metric] = []
        for dev in self._devices:
            if dev.lost:
                metrics.append(Metric("llm_gpu", dev.tags, {"gpu_lost": 1}, time_ns))
                continue
            readings = Readings(nvml, dev)
            try:
                fields = readings.fields(self._fields)
                smi = (
                    nvidia_smi_metric(
                        readings, dev.tags, self._session.driver_version, self._session.cuda_version, time_ns
                    )
                    if self._config.nvidia_smi_compat
                    else None
                )
            except GpuLost as exc:
                dev.lost = True  # a lost GPU needs a reset/reboot; NVML will not bring it back
                self._state.fail(
                    ("lost", dev.index),
                    f"GPU {dev.index} ({dev.tags.get('pci_bus_id', '?')}) is lost: {exc}",
                    level=logging.ERROR,
                )
                metrics.append(Metric("llm_gpu", dev.tags, {"gpu_lost": 1}, time_ns))
                continue
            fields["gpu_lost"] = 0
            if dev.xid_registered:
                xid = {"xid_errors_total": dev.xid_total, "xid_last": dev.xid_last}
                fields.update((k, v) for k, v in xid.items() if v is not None and self._config.keeps(k))
            metrics.append(Metric("llm_gpu", dev.tags, fields, time_ns))
            if smi is not None:
                metrics.append(smi)
        return metrics

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        return await asyncio.to_thread(self._sample, ctx.time_ns)

    async def close(self) -> None:
        nvml = self._session.nvml
        if self._event_set is not None and nvml is not None:
            try:
                nvml.nvmlEventSetFree(self._event_set)
            except nvml.NVMLError:
                pass
            self._event_set = None
        self._session.shutdown()


def build(config: Config, env: SourceEnv) -> list[Source]:
    gpu: GpuConfig = config.gpu
    if gpu.enabled is False:
        return []
    sources: list[Source] = []
    others: list[Source] = list(gpu_backends.build(gpu))
    if gpu.wants("nvidia"):
        session = env.nvml_session(required=gpu.enabled is True)
        session.others = tuple(s.name.removeprefix("gpu:") for s in others)  # for its start-up line
        sources.append(GpuSource(gpu, session))
    return sources + others
