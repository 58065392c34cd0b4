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


def read_gpu(nvml: Any, dev: GpuDevice, compat: bool) -> dict[str, Any]:
    """Raw NVML readings for one GPU, keyed by our names; unsupported readings are absent.

    Raises GpuLost when NVML says the GPU fell off the bus.
    """
    raw: dict[str, Any] = {}
    h = dev.handle

    def get(key: str, call: Callable[[], Any]) -> Any:
        if key in dev.unsupported:
            return None
        try:
            return call()
        except AttributeError:  # an older nvidia-ml-py without this function
            dev.unsupported.add(key)
            return None
        except nvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == nvml.NVML_ERROR_GPU_IS_LOST:
                raise GpuLost(str(exc)) from exc
            if code in (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_FUNCTION_NOT_FOUND):
                dev.unsupported.add(key)  # it will not become supported: stop asking
            return None

    util = get("util", lambda: nvml.nvmlDeviceGetUtilizationRates(h))
    if util is not None:
        raw["utilization_gpu"] = util.gpu
        raw["utilization_memory"] = util.memory
    mem = get("mem", lambda: nvml.nvmlDeviceGetMemoryInfo(h))
    if mem is not None:
        raw["memory_total"] = mem.total
        raw["memory_used"] = mem.used
        raw["memory_free"] = mem.free
    raw["temperature_gpu"] = get("temp", lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
    raw["power_mw"] = get("power", lambda: nvml.nvmlDeviceGetPowerUsage(h))
    raw["power_limit_mw"] = get("power_limit", lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h))
    raw["energy_mj"] = get("energy", lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(h))
    raw["clock_sm"] = get("clock_sm", lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM))
    raw["clock_mem"] = get("clock_mem", lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM))
    raw["fan_speed"] = get("fan", lambda: nvml.nvmlDeviceGetFanSpeed(h))
    raw["pstate"] = get("pstate", lambda: nvml.nvmlDeviceGetPerformanceState(h))
    reasons = get("clock_events", lambda: nvml.nvmlDeviceGetCurrentClocksEventReasons(h))
    if reasons is None:  # drivers before 535 only know the older name
        reasons = get("throttle", lambda: nvml.nvmlDeviceGetCurrentClocksThrottleReasons(h))
    raw["throttle_reasons"] = reasons
    raw["ecc_uncorrected"] = get(
        "ecc_unc",
        lambda: nvml.nvmlDeviceGetTotalEccErrors(h, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC),
    )
    raw["ecc_corrected"] = get(
        "ecc_corr",
        lambda: nvml.nvmlDeviceGetTotalEccErrors(h, nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, nvml.NVML_VOLATILE_ECC),
    )
    rows = get("remapped", lambda: nvml.nvmlDeviceGetRemappedRows(h))  # Ampere and later
    if rows is not None:
        raw["rows_pending"] = 1 if rows[2] else 0
    else:  # older GPUs retire pages instead
        raw["rows_pending"] = get("retired", lambda: nvml.nvmlDeviceGetRetiredPagesPendingStatus(h))
    # Each PCIe reading samples for ~20 ms inside the driver: wall time in this thread, not CPU.
    raw["pcie_tx"] = get("pcie_tx", lambda: nvml.nvmlDeviceGetPcieThroughput(h, nvml.NVML_PCIE_UTIL_TX_BYTES))
    raw["pcie_rx"] = get("pcie_rx", lambda: nvml.nvmlDeviceGetPcieThroughput(h, nvml.NVML_PCIE_UTIL_RX_BYTES))
    enc = get("encoder", lambda: nvml.nvmlDeviceGetEncoderUtilization(h))
    raw["encoder_util"] = enc[0] if enc is not None else None
    dec = get("decoder", lambda: nvml.nvmlDeviceGetDecoderUtilization(h))
    raw["decoder_util"] = dec[0] if dec is not None else None
    if compat:
        raw["compute_mode"] = get("compute_mode", lambda: nvml.nvmlDeviceGetComputeMode(h))
        raw["clock_graphics"] = get("clock_gr", lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_GRAPHICS))
        raw["clock_video"] = get("clock_video", lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_VIDEO))
        raw["pcie_gen"] = get("pcie_gen", lambda: nvml.nvmlDeviceGetCurrPcieLinkGeneration(h))
        raw["pcie_width"] = get("pcie_width", lambda: nvml.nvmlDeviceGetCurrPcieLinkWidth(h))
    return {k: v for k, v in raw.items() if v is not None}


def _div(value: Any, by: float) -> float | None:
    return None if value is None else value / by


def llm_gpu_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """Our `llm_gpu` fields from raw readings (pure)."""
    fields: dict[str, Any] = {
        "utilization_gpu": raw.get("utilization_gpu"),
        "utilization_memory": raw.get("utilization_memory"),
        "memory_total_mib": _div(raw.get("memory_total"), MIB),
        "memory_used_mib": _div(raw.get("memory_used"), MIB),
        "memory_free_mib": _div(raw.get("memory_free"), MIB),
        "temperature_gpu": raw.get("temperature_gpu"),
        "power_draw_w": _div(raw.get("power_mw"), 1000.0),
        "power_limit_w": _div(raw.get("power_limit_mw"), 1000.0),
        "energy_total_j": _div(raw.get("energy_mj"), 1000.0),
        "clocks_sm_mhz": raw.get("clock_sm"),
        "clocks_mem_mhz": raw.get("clock_mem"),
        "fan_speed": raw.get("fan_speed"),
        "pstate": raw["pstate"] if raw.get("pstate", PSTATE_UNKNOWN) != PSTATE_UNKNOWN else None,
        "ecc_uncorrected_volatile": raw.get("ecc_uncorrected"),
        "ecc_corrected_volatile": raw.get("ecc_corrected"),
        "retired_or_remapped_rows_pending": raw.get("rows_pending"),
        "pcie_tx_kib_s": raw.get("pcie_tx"),
        "pcie_rx_kib_s": raw.get("pcie_rx"),
        "encoder_util": raw.get("encoder_util"),
        "decoder_util": raw.get("decoder_util"),
    }
    reasons = raw.get("throttle_reasons")
    if reasons is not None:
        for name, bits in THROTTLE_BITS.items():
            fields[name] = 1 if reasons & bits else 0
    return clean_fields(fields)


def nvidia_smi_metric(
    raw: dict[str, Any], tags: dict[str, str], driver: str | None, cuda: str | None, time_ns: int
) -> Metric:
    """The same readings under Telegraf inputs.nvidia_smi's measurement, tags, names and units (pure)."""
    smi_tags = {"index": tags["index"]}
    for key in ("name", "uuid"):
        if key in tags:
            smi_tags[key] = tags[key]
    pstate = raw.get("pstate")
    if pstate is not None and pstate != PSTATE_UNKNOWN:
        smi_tags["pstate"] = f"P{pstate}"
    if raw.get("compute_mode") in COMPUTE_MODES:
        smi_tags["compute_mode"] = COMPUTE_MODES[raw["compute_mode"]]

    def mib(key: str) -> int | None:
        return raw[key] // MIB if key in raw else None

    fields = {
        "driver_version": driver,
        "cuda_version": cuda,
        "fan_speed": raw.get("fan_speed"),
        "memory_total": mib("memory_total"),
        "memory_used": mib("memory_used"),
        "memory_free": mib("memory_free"),
        "temperature_gpu": raw.get("temperature_gpu"),
        "utilization_gpu": raw.get("utilization_gpu"),
        "utilization_memory": raw.get("utilization_memory"),
        "utilization_encoder": raw.get("encoder_util"),
        "utilization_decoder": raw.get("decoder_util"),
        "pcie_link_gen_current": raw.get("pcie_gen"),
        "pcie_link_width_current": raw.get("pcie_width"),
        "clocks_current_graphics": raw.get("clock_graphics"),
        "clocks_current_sm": raw.get("clock_sm"),
        "clocks_current_memory": raw.get("clock_mem"),
        "clocks_current_video": raw.get("clock_video"),
        "power_draw": _div(raw.get("power_mw"), 1000.0),
    }
    return Metric("nvidia_smi", smi_tags, clean_fields(fields), time_ns)


class GpuSource:
    name = "gpu"

    def __init__(self, config: GpuConfig, session: NvmlSession):
        self._config = config
        self._session = session
        self._devices: list[GpuDevice] | None = None
        self._event_set: Any = None
        self._state = StateLog(log)

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
            try:
                raw = read_gpu(nvml, dev, self._config.nvidia_smi_compat)
            except GpuLost as exc:
                dev.lost = True  # a lost GPU needs a reset/reboot; NVML will not bring it back
                self._state.fail(
                    ("lost", dev.index),
                    f"GPU {dev.index} ({dev.tags.get('pci_bus_id', '?')}) is lost: {exc}",
                    level=logging.ERROR,
                )
                metrics.append(Metric("llm_gpu", dev.tags, {"gpu_lost": 1}, time_ns))
                continue
            fields = llm_gpu_fields(raw)
            fields["gpu_lost"] = 0
            if dev.xid_registered:
                fields["xid_errors_total"] = dev.xid_total
                if dev.xid_last is not None:
                    fields["xid_last"] = dev.xid_last
            metrics.append(Metric("llm_gpu", dev.tags, fields, time_ns))
            if self._config.nvidia_smi_compat:
                metrics.append(
                    nvidia_smi_metric(raw, dev.tags, self._session.driver_version, self._session.cuda_version, time_ns)
                )
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
    sources: list = []
    others = gpu_backends.build(gpu)
    if gpu.wants("nvidia"):
        session = env.nvml_session(required=gpu.enabled is True)
        session.others = tuple(s.name.removeprefix("gpu:") for s in others)  # for its start-up line
        sources.append(GpuSource(gpu, session))
    return sources + others
