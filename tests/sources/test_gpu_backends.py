"""AMD, Intel and Apple GPU backends on recorded data: sysfs trees, an `ioreg` plist behind a fake `ioreg`."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import psutil
import pytest

from telegraf_llm_input.config import parse_config
from telegraf_llm_input.config.loader import ConfigError
from telegraf_llm_input.lineprotocol import encode_batch
from telegraf_llm_input.schema import lookup
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import GatherContext, SourceEnv
from telegraf_llm_input.sources.gpu import GpuSource
from telegraf_llm_input.sources.gpu_apple import parse_ioreg
from telegraf_llm_input.sources.gpu_backends import AppleGpuSource, SysfsGpuSource
from telegraf_llm_input.sources.gpu_sysfs import parse_dpm_current_mhz, power_w
from tests.fakes.nvml import install_missing_library
from tests.sources.test_gpu import records  # noqa: F401  (fixture)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MIXED = FIXTURES / "sysfs" / "mixed-amd-intel"
ARC = FIXTURES / "sysfs" / "intel-arc"
M1PRO = FIXTURES / "ioreg" / "m1pro.plist"
FAKE_BIN = Path(__file__).resolve().parent.parent / "fakes" / "bin"
MIB = 1024 * 1024
T0 = 1_700_000_000_000_000_000


def sources(gpu: dict) -> list:
    config = parse_config({"gpu": gpu, "targets": [], "host": {"enabled": False}})
    return [s for s in build_sources(config, SourceEnv()) if s.name.startswith("gpu")]


def gather(source, t: int = T0):
    return asyncio.run(source.gather(GatherContext(time_ns=t, deadline_s=5.0)))


def gpu_points(srcs) -> list:
    return [m for s in srcs for m in gather(s) if m.measurement == "llm_gpu"]


@pytest.fixture
def no_nvml(monkeypatch):
    install_missing_library(monkeypatch)


@pytest.fixture
def fake_ioreg(monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_IOREG_PLIST", str(M1PRO))


def test_amd_card_from_recorded_sysfs_has_vendor_tag_and_converted_units(no_nvml):
    srcs = sources({"sysfs_root": str(MIXED), "backends": ["amd"]})
    assert [s.name for s in srcs] == ["gpu:amd"]
    [amd] = gpu_points(srcs)
    assert amd.tags == {"index": "1", "vendor": "amd", "pci_bus_id": "0000:2f:00.0"}
    f = amd.fields
    assert f["utilization_gpu"] == 93 and f["utilization_memory"] == 41
    assert f["memory_total_mib"] == pytest.approx(17163091968 / MIB)
    assert f["memory_used_mib"] == pytest.approx(13312.0)  # 13958643712 bytes
    assert f["memory_free_mib"] == pytest.approx((17163091968 - 13958643712) / MIB)
    assert f["power_draw_w"] == pytest.approx(231.0)  # power1_input, µW (no power1_average on this card)
    assert f["power_limit_w"] == pytest.approx(222.0)
    assert f["temperature_gpu"] == 61  # the `edge` sensor, m°C -> °C; not junction (78)
    assert f["clocks_sm_mhz"] == 2254 and f["clocks_mem_mhz"] == 1218  # the `*` levels
    assert f["gpu_lost"] == 0
    # Not exposed by amdgpu sysfs (or not on this card): absent, never 0.
    for absent in ("energy_total_j", "fan_speed", "pstate", "throttle_power_cap", "xid_errors_total", "pcie_tx_kib_s"):
        assert absent not in f
    for name, value in f.items():
        assert lookup("llm_gpu", name) is not None, name
        assert type(value) is type(GPU_TYPES[name]), name  # one type per field, the NVML backend's


def test_excluded_fields_are_left_out_on_sysfs_backends_too(no_nvml):
    srcs = sources({"sysfs_root": str(MIXED), "backends": ["amd"], "exclude": ["power_*", "memory_*_mib"]})
    [amd] = gpu_points(srcs)
    assert sorted(amd.fields) == [
        "clocks_mem_mhz",
        "clocks_sm_mhz",
        "gpu_lost",
        "temperature_gpu",
        "utilization_gpu",
        "utilization_memory",
    ]


# The Python type NVML's fields have (the NVIDIA backend's fake reports these), for the type check above.
GPU_TYPES = {
    "utilization_gpu": 0,
    "utilization_memory": 0,
    "memory_total_mib": 0.0,
    "memory_used_mib": 0.0,
    "memory_free_mib": 0.0,
    "temperature_gpu": 0,
    "power_draw_w": 0.0,
    "power_limit_w": 0.0,
    "energy_total_j": 0.0,
    "clocks_sm_mhz": 0,
    "clocks_mem_mhz": 0,
    "gpu_lost": 0,
    "utilization_renderer": 0,
    "utilization_tiler": 0,
    "memory_allocated_mib": 0.0,
}


def test_power1_average_wins_over_power1_input_and_energy_is_read(tmp_path, no_nvml):
    tree = tmp_path / "sys"
    shutil.copytree(MIXED, tree, symlinks=True)
    hwmon = next((tree / "class" / "drm" / "card1" / "device" / "hwmon").iterdir())
    (hwmon / "power1_average").write_text("187000000\n")
    (hwmon / "energy1_input").write_text("5000000000\n")
    [amd] = gpu_points(sources({"sysfs_root": str(tree), "backends": ["amd"]}))
    assert amd.fields["power_draw_w"] == pytest.approx(187.0)
    assert amd.fields["energy_total_j"] == pytest.approx(5000.0)


def test_intel_igpu_next_to_the_amd_card_reports_only_its_clock(no_nvml):
    srcs = sources({"sysfs_root": str(MIXED)})  # auto: every backend that finds hardware
    assert sorted(s.name for s in srcs) == ["gpu", "gpu:amd", "gpu:intel"]
    points = {m.tags["vendor"]: m for m in gpu_points([s for s in srcs if s.name != "gpu"])}
    igpu = points["intel"]
    assert igpu.tags == {"index": "0", "vendor": "intel", "pci_bus_id": "0000:00:02.0"}
    assert igpu.fields == {"clocks_sm_mhz": 700, "gpu_lost": 0}  # no hwmon on an iGPU: nothing else, no zeros


def test_intel_arc_i915_and_xe_energy_power_temperature_and_clock(tmp_path, no_nvml):
    tree = tmp_path / "sys"
    shutil.copytree(ARC, tree, symlinks=True)
    [src] = sources({"sysfs_root": str(tree), "backends": ["intel"]})
    first = {m.tags["index"]: m for m in gather(src)}
    a770, b580 = first["0"], first["1"]
    assert a770.tags == {"index": "0", "vendor": "intel", "pci_bus_id": "0000:03:00.0"}
    assert a770.fields["energy_total_j"] == pytest.approx(1234.56789)  # µJ
    assert a770.fields["power_limit_w"] == pytest.approx(190.0)
    assert a770.fields["clocks_sm_mhz"] == 2400
    assert "temperature_gpu" not in a770.fields  # i915 hwmon has no temperature
    assert "power_draw_w" not in a770.fields  # one energy reading is no rate yet
    assert b580.fields["energy_total_j"] == pytest.approx(987.654321)  # the `card` channel, not `pkg`
    assert b580.fields["power_limit_w"] == pytest.approx(150.0)  # card PL1 is 0 (disabled): the pkg one
    assert b580.fields["temperature_gpu"] == 58  # `pkg`
    assert b580.fields["clocks_sm_mhz"] == 2850  # tile0/gt0/freq0/act_freq
    # 40 J more on the A770 between two gathers -> a power draw from the energy's rate
    energy = next((tree / "class" / "drm" / "card0" / "device" / "hwmon").iterdir()) / "energy1_input"
    energy.write_text(str(1234567890 + 40_000_000) + "\n")
    second = {m.tags["index"]: m for m in gather(src)}
    assert second["0"].fields["power_draw_w"] > 0
    assert second["0"].fields["energy_total_j"] == pytest.approx(1274.56789)
    assert "power_draw_w" not in second["1"].fields or second["1"].fields["power_draw_w"] == 0.0


def test_power_from_energy_is_absent_on_first_sample_reset_or_wrap():
    assert power_w(None, (10.0, 100.0)) is None
    assert power_w((10.0, 100.0), (12.0, 150.0)) == pytest.approx(25.0)
    assert power_w((10.0, 100.0), (12.0, 50.0)) is None
    assert power_w((10.0, 100.0), (10.0, 150.0)) is None


def test_dpm_table_current_level():
    assert parse_dpm_current_mhz("0: 96Mhz *\n1: 456Mhz \n2: 772Mhz \n") == 96
    assert parse_dpm_current_mhz("0: 500Mhz\n1: 800Mhz\n") is None


def test_removed_card_reports_gpu_lost(tmp_path, no_nvml, records):  # noqa: F811
    tree = tmp_path / "sys"
    shutil.copytree(MIXED, tree, symlinks=True)
    [src] = sources({"sysfs_root": str(tree), "backends": ["amd"]})
    assert gather(src)[0].fields["gpu_lost"] == 0
    (tree / "class" / "drm" / "card1" / "device" / "vendor").unlink()
    [lost] = gather(src)
    assert lost.fields == {"gpu_lost": 1} and lost.tags["vendor"] == "amd"
    assert any("gone from sysfs" in r.getMessage() for r in records)


def test_apple_m1_pro_plist_via_fake_ioreg_on_linux(fake_ioreg, no_nvml):
    srcs = sources({"backends": ["apple"]})
    assert [type(s) for s in srcs] == [AppleGpuSource]
    [gpu] = gpu_points(srcs)
    assert gpu.tags == {"index": "0", "name": "Apple M1 Pro", "gpu_cores": "16", "vendor": "apple"}
    f = gpu.fields
    assert f["utilization_gpu"] == 34 and f["utilization_renderer"] == 33 and f["utilization_tiler"] == 31
    assert f["memory_used_mib"] == pytest.approx(7688503296 / MIB)
    assert f["memory_allocated_mib"] == pytest.approx(14511046656 / MIB)
    total = psutil.virtual_memory().total  # unified memory: the GPU's total is the machine's
    assert f["memory_total_mib"] == pytest.approx(total / MIB)
    for absent in ("power_draw_w", "energy_total_j", "temperature_gpu", "gpu_lost"):
        assert absent not in f
    for name, value in f.items():
        assert lookup("llm_gpu", name) is not None, name
        assert type(value) is type(GPU_TYPES[name]), name
    line = encode_batch([gpu]).text
    assert line.startswith("llm_gpu,gpu_cores=16,index=0,name=Apple\\ M1\\ Pro,vendor=apple ")
    assert " utilization_gpu=34i," in line or ",utilization_gpu=34i" in line


def test_failing_ioreg_is_one_clear_error(fake_ioreg, monkeypatch, no_nvml):
    monkeypatch.setenv("FAKE_IOREG_EXIT", "2")
    [src] = sources({"backends": ["apple"]})
    with pytest.raises(RuntimeError, match="ioreg exited 2: ioreg: IOServiceGetMatchingServices failed"):
        gather(src)


def test_ioreg_garbage_is_an_error_and_a_gpu_without_statistics_is_skipped():
    with pytest.raises(ValueError, match="not a plist"):
        parse_ioreg(b"+-o AGXAcceleratorG13X  <class AGXAcceleratorG13X>")
    with pytest.raises(ValueError, match="not a plist"):
        parse_ioreg(M1PRO.read_bytes()[:400])  # cut short
    import plistlib

    assert parse_ioreg(plistlib.dumps([{"IOClass": "AGXAcceleratorG13X", "model": "Apple M2"}])) == []


def test_apple_without_ioreg_says_so(monkeypatch, no_nvml, records):  # noqa: F811
    monkeypatch.setenv("PATH", "/nonexistent")
    assert sources({"backends": ["apple"], "enabled": True}) == []
    assert any("ioreg" in r.getMessage() and r.levelname == "WARNING" for r in records)


def test_explicit_backend_without_hardware_warns_and_auto_stays_quiet(tmp_path, no_nvml, records):  # noqa: F811
    assert sources({"sysfs_root": str(tmp_path), "backends": ["amd", "intel"], "enabled": True}) == []
    assert sum("no AMD card" in r.getMessage() or "no INTEL card" in r.getMessage() for r in records) == 2
    records.clear()
    assert [s.name for s in sources({"sysfs_root": str(tmp_path)})] == ["gpu"]  # NVML's source only
    assert not any("card under" in r.getMessage() for r in records)


def test_backends_config_is_validated():
    for bad, why in (
        ({"backends": []}, "at least one"),
        ({"backends": ["auto", "amd"]}, "auto"),
        ({"backends": ["radeon"]}, "must be one of"),
    ):
        with pytest.raises(ConfigError, match=why):
            parse_config({"gpu": bad, "targets": []})


def test_nvidia_backend_not_named_means_no_nvml_source(no_nvml):
    srcs = sources({"sysfs_root": str(MIXED), "backends": ["amd"]})
    assert not any(isinstance(s, GpuSource) for s in srcs)
    assert all(isinstance(s, SysfsGpuSource) for s in srcs)
