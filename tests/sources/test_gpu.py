"""The GPU source against a fake NVML 8-GPU box, and against the real pynvml on this GPU-less machine."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from telegraf_llm_input.config import parse_config
from telegraf_llm_input.config.loader import ConfigError
from telegraf_llm_input.lineprotocol import encode_batch
from telegraf_llm_input.schema import lookup
from telegraf_llm_input.schema.gpu import LLM_GPU as LLM_GPU_SCHEMA, NVIDIA_SMI as NVIDIA_SMI_SCHEMA
from telegraf_llm_input.sources import build_sources, gpu_amd, gpu_intel
from telegraf_llm_input.sources.base import GatherContext, SourceEnv
from telegraf_llm_input.sources.gpu import CALLS, LLM_GPU, NVIDIA_SMI, GpuSource
from tests.fakes.nvml import FakeNvml, install_missing_library

T0 = 1_700_000_000_000_000_000


@pytest.fixture
def records():
    """Log records of the agent's logger (it does not propagate to pytest's caplog handler)."""
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            got.append(record)

    logger = logging.getLogger("telegraf_llm_input")
    handler, old_level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield got
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def gpu_sources(gpu: dict | None = None) -> list[GpuSource]:
    config = parse_config({"gpu": gpu or {}, "targets": [], "host": {"enabled": False}})
    return [s for s in build_sources(config, SourceEnv()) if isinstance(s, GpuSource)]


def gather(source, t: int = T0):
    return asyncio.run(source.gather(GatherContext(time_ns=t, deadline_s=5.0)))


def by_index(metrics, measurement="llm_gpu"):
    return {m.tags["index"]: m for m in metrics if m.measurement == measurement}


def test_eight_gpus_with_documented_fields_and_values(monkeypatch):
    FakeNvml().install(monkeypatch)
    [source] = gpu_sources()
    gpus = by_index(gather(source))
    assert sorted(gpus, key=int) == [str(i) for i in range(8)]

    h0 = gpus["0"]
    assert h0.tags == {
        "index": "0",
        "uuid": "GPU-5e1d0f7a-3c2b-4e55-9a0d-8c1f2b3a4c00",
        "name": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": "00000000:18:00.0",
        "vendor": "nvidia",
    }
    f = h0.fields
    assert f["utilization_gpu"] == 87 and f["utilization_memory"] == 54
    assert f["memory_total_mib"] == 81_559 and f["memory_used_mib"] == 74_200
    assert f["memory_free_mib"] == 81_559 - 74_200
    assert f["temperature_gpu"] == 58
    assert f["power_draw_w"] == pytest.approx(512.345)
    assert f["power_limit_w"] == pytest.approx(700.0)
    assert f["energy_total_j"] == pytest.approx(9_876_543.210)  # NVML counts mJ
    assert f["clocks_sm_mhz"] == 1980 and f["clocks_mem_mhz"] == 2619
    assert f["pstate"] == 0
    assert f["throttle_power_cap"] == 1 and f["throttle_thermal"] == 0 and f["throttle_hw_slowdown"] == 0
    assert f["ecc_uncorrected_volatile"] == 0 and f["ecc_corrected_volatile"] == 3
    assert f["retired_or_remapped_rows_pending"] == 0
    assert f["pcie_tx_kib_s"] == 1_234 and f["pcie_rx_kib_s"] == 56_789
    assert f["decoder_util"] == 0
    assert f["gpu_lost"] == 0 and f["xid_errors_total"] == 0
    # H100 SXM: no fan reading and no video encoder -> no such fields, not zeros
    assert "fan_speed" not in f and "encoder_util" not in f

    rtx = gpus["6"].fields
    assert rtx["fan_speed"] == 41 and rtx["encoder_util"] == 3 and rtx["pstate"] == 2
    assert rtx["throttle_thermal"] == 1 and rtx["throttle_idle"] == 1 and rtx["throttle_power_cap"] == 0
    # no ECC on a GeForce card; no XID registration either
    for absent in (
        "ecc_uncorrected_volatile",
        "ecc_corrected_volatile",
        "retired_or_remapped_rows_pending",
        "xid_errors_total",
    ):
        assert absent not in rtx

    for m in gpus.values():
        for name in m.fields:
            assert lookup("llm_gpu", name) is not None, f"llm_gpu.{name} is not documented"
    encoded = encode_batch(list(gpus.values()))
    assert encoded.lines == 8 and encoded.dropped == 0


def test_unsupported_calls_are_not_repeated(monkeypatch):
    fake = FakeNvml().install(monkeypatch)
    [source] = gpu_sources()
    gather(source)
    first = fake.calls.get("fan", 0)
    gather(source)
    gather(source)
    # the 4090 supports it (asked every gather); the 7 H100s are asked once
    assert fake.calls["fan"] == first + 2
    assert first == 8


def test_lost_gpu_is_reported_once_and_the_others_keep_going(monkeypatch, records):
    fake = FakeNvml().install(monkeypatch)
    [source] = gpu_sources()
    gather(source)
    fake.lose(3)
    for i in range(3):
        gpus = by_index(gather(source, T0 + i))
        assert gpus["3"].fields == {"gpu_lost": 1}
        assert gpus["3"].tags["uuid"].endswith("4c03")  # still identifiable
        assert gpus["4"].fields["utilization_gpu"] == 87
    errors = [r for r in records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "GPU 3" in errors[0].getMessage()


def test_gpu_lost_before_start(monkeypatch, records):
    fake = FakeNvml()
    fake.lose(7)
    fake.install(monkeypatch)
    [source] = gpu_sources()
    gpus = by_index(gather(source))
    assert gpus["7"].fields == {"gpu_lost": 1}
    assert len(gpus) == 8


def test_indices_filter(monkeypatch, records):
    FakeNvml().install(monkeypatch)
    [source] = gpu_sources({"indices": [1, 6]})
    assert sorted(by_index(gather(source))) == ["1", "6"]


def test_xid_events_are_counted_per_gpu(monkeypatch):
    fake = FakeNvml().install(monkeypatch)
    [source] = gpu_sources()
    gather(source)
    fake.xid(2, 79)  # fallen off the bus
    fake.xid(2, 48)  # double-bit ECC
    fake.xid(5, 13)
    fake.xid(6, 31)  # not registered on the 4090: never delivered
    gpus = by_index(gather(source))
    assert gpus["2"].fields["xid_errors_total"] == 2 and gpus["2"].fields["xid_last"] == 48
    assert gpus["5"].fields["xid_errors_total"] == 1 and gpus["5"].fields["xid_last"] == 13
    assert gpus["0"].fields["xid_errors_total"] == 0 and "xid_last" not in gpus["0"].fields
    gpus = by_index(gather(source))
    assert gpus["2"].fields["xid_errors_total"] == 2  # a counter: kept, not reset per gather


def test_energy_counter_grows_with_time(monkeypatch):
    fake = FakeNvml().install(monkeypatch)
    [source] = gpu_sources()
    before = by_index(gather(source))["0"].fields["energy_total_j"]
    fake.advance(10.0)
    after = by_index(gather(source))["0"].fields["energy_total_j"]
    assert after - before == pytest.approx(512.345 * 10, rel=1e-6)


def test_nvidia_smi_compat_uses_telegraf_names_and_units(monkeypatch):
    FakeNvml().install(monkeypatch)
    [source] = gpu_sources({"nvidia_smi_compat": True})
    metrics = gather(source)
    smi = by_index(metrics, "nvidia_smi")
    assert len(smi) == 8 and len(by_index(metrics)) == 8
    m = smi["6"]
    assert m.tags == {
        "index": "6",
        "name": "NVIDIA GeForce RTX 4090",
        "uuid": "GPU-0b7c9e21-6d4f-4a8b-b2c3-d1e2f3a4b506",
        "pstate": "P2",
        "compute_mode": "Default",
    }
    assert m.fields == {
        "driver_version": "550.54.15",
        "cuda_version": "12.4",
        "fan_speed": 41,
        "memory_total": 24_564,
        "memory_used": 6_120,
        "memory_free": 24_564 - 6_120,
        "temperature_gpu": 66,
        "utilization_gpu": 35,
        "utilization_memory": 20,
        "utilization_encoder": 3,
        "utilization_decoder": 0,
        "pcie_link_gen_current": 4,
        "pcie_link_width_current": 16,
        "clocks_current_graphics": 2520,
        "clocks_current_sm": 2520,
        "clocks_current_memory": 10501,
        "clocks_current_video": 1965,
        "power_draw": pytest.approx(212.4),
    }
    # Telegraf writes these as integers: a dashboard's field type must not change under it
    line = [ln for ln in encode_batch([m]).text.splitlines()][0]
    assert "memory_used=6120i" in line and "fan_speed=41i" in line and "power_draw=212.4" in line
    assert "power_draw" in line and "fan_speed" not in smi["0"].fields
    for name in m.fields:
        assert lookup("nvidia_smi", name) is not None, f"nvidia_smi.{name} is not documented"


def test_compat_off_by_default(monkeypatch):
    FakeNvml().install(monkeypatch)
    [source] = gpu_sources()
    assert not by_index(gather(source), "nvidia_smi")


def test_missing_library_one_info_line_and_nothing_else(monkeypatch, records):
    install_missing_library(monkeypatch)
    [source] = gpu_sources()
    for i in range(3):
        assert gather(source, T0 + i) == []
    assert [r.levelno for r in records] == [logging.INFO]
    assert "NVML" in records[0].getMessage()


def test_missing_python_binding(monkeypatch, records):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    [source] = gpu_sources()
    assert gather(source) == [] and gather(source) == []
    assert [r.levelno for r in records] == [logging.INFO]


def test_required_gpu_missing_is_a_warning(monkeypatch, records):
    install_missing_library(monkeypatch)
    [source] = gpu_sources({"enabled": True})
    assert gather(source) == []
    assert [r.levelno for r in records] == [logging.WARNING]


def test_disabled_builds_nothing(monkeypatch):
    FakeNvml().install(monkeypatch)
    assert gpu_sources({"enabled": False}) == []


def test_real_pynvml_without_a_gpu(records):
    """This machine has no NVIDIA driver: the real binding must give one info line and no metrics."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has a working NVML")
    [source] = gpu_sources()
    assert gather(source) == [] and gather(source) == []
    asyncio.run(source.close())
    assert [r.levelno for r in records] == [logging.INFO]


def test_older_driver_throttle_reasons_fallback(monkeypatch):
    import pynvml

    fake = FakeNvml().install(monkeypatch)

    def too_old(handle):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", too_old)
    [source] = gpu_sources()
    gather(source)
    f = by_index(gather(source))["6"].fields
    assert f["throttle_thermal"] == 1 and f["throttle_power_cap"] == 0
    assert fake.calls["reasons_old"] == 16  # 8 GPUs x 2 gathers, through the older call


def test_the_nvml_tables_are_the_documented_fields():
    """Every field the NVML tables give is documented with its type, and every documented `llm_gpu` field comes
    from a table or is one of the few that come from elsewhere."""
    events = {"xid_errors_total", "xid_last", "gpu_lost"}  # NVML events and the source's own state
    apple = {"utilization_renderer", "utilization_tiler", "memory_allocated_mib"}  # ioreg only
    documented = {f.name for f in LLM_GPU_SCHEMA.fields}
    nvml = [row.field for row in LLM_GPU]
    assert len(set(nvml)) == len(nvml)
    assert set(nvml) == documented - events - apple
    smi = [row.field for row in NVIDIA_SMI]
    assert {"driver_version", "cuda_version", *smi} == {f.name for f in NVIDIA_SMI_SCHEMA.fields}
    tags_only = {"pstate", "compute_mode"}  # nvidia_smi tags
    assert {row.call for row in (*LLM_GPU, *NVIDIA_SMI)} | tags_only == set(CALLS)
    for backend in (gpu_amd, gpu_intel):
        assert {row.field for row in backend.FIELDS} <= documented, backend.VENDOR


def test_excluded_fields_are_not_written_and_their_nvml_calls_not_made(monkeypatch):
    fake = FakeNvml().install(monkeypatch)
    [source] = gpu_sources({"exclude": ["pcie_*", "throttle_*", "xid_last"]})
    f = by_index(gather(source))["0"].fields
    assert not [k for k in f if k.startswith(("pcie_", "throttle_"))]
    assert f["utilization_gpu"] == 87 and f["xid_errors_total"] == 0 and f["gpu_lost"] == 0
    assert "pcie" not in fake.calls and "reasons" not in fake.calls  # the driver is not asked at all


def test_an_exclude_glob_that_names_no_field_is_a_config_error():
    with pytest.raises(ConfigError, match="gpu.exclude: 'pcie_tx_kbps' matches no llm_gpu field"):
        parse_config({"gpu": {"exclude": ["pcie_tx_kbps"]}})
