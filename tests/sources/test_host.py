"""llm_host with the real psutil on this machine, and the PSI parser on sample text."""

from __future__ import annotations

import asyncio
import math
import time

import psutil
import pytest

from telegraf_llm_input.config.host import HostConfig
from telegraf_llm_input.schema.host import HOST
from telegraf_llm_input.sources.base import GatherContext
from telegraf_llm_input.sources.host import HostSource, parse_psi_some_avg10, read_psi_some_avg10

PSI = """some avg10=1.53 avg60=0.87 avg300=0.21 total=12345678
full avg10=0.40 avg60=0.10 avg300=0.02 total=2345678
"""


def gather(source: HostSource):
    (metric,) = asyncio.run(source.gather(GatherContext(time_ns=123, deadline_s=5)))
    return metric


def test_real_values_are_sane(tmp_path):
    source = HostSource(HostConfig(model_dir=str(tmp_path)))
    first = gather(source)
    assert first.measurement == "llm_host" and first.time_ns == 123 and first.tags == {}
    f = first.fields
    assert f["mem_total_bytes"] > 0 and 0 < f["mem_available_bytes"] <= f["mem_total_bytes"]
    assert f["mem_used_bytes"] == f["mem_total_bytes"] - f["mem_available_bytes"]
    for key in ("mem_used_percent", "swap_used_percent", "model_dir_used_percent"):
        assert 0.0 <= f[key] <= 100.0, key
    assert f["load1"] >= 0 and f["swap_total_bytes"] >= f["swap_used_bytes"] >= 0
    du = psutil.disk_usage(str(tmp_path))
    assert f["model_dir_total_bytes"] == du.total
    assert math.isclose(f["model_dir_free_bytes"], du.free, rel_tol=0.02, abs_tol=256 * 2**20)
    # Swap rates need two samples: absent at first, present (and non-negative) after.
    assert "swap_in_bytes_per_s" not in f and "swap_out_bytes_per_s" not in f
    second = gather(source).fields
    assert second["swap_in_bytes_per_s"] >= 0 and second["swap_out_bytes_per_s"] >= 0
    documented = {field.name for field in HOST.fields}
    assert set(f) <= documented and set(second) <= documented


def test_missing_model_dir_only_drops_its_fields(tmp_path):
    fields = gather(HostSource(HostConfig(model_dir=str(tmp_path / "gone")))).fields
    assert "model_dir_free_bytes" not in fields and fields["mem_total_bytes"] > 0
    assert "model_dir_free_bytes" not in gather(HostSource(HostConfig())).fields


@pytest.mark.parametrize(
    "text,value",
    [
        (PSI, 1.53),
        ("full avg10=0.40 avg60=0 avg300=0 total=1\nsome avg10=0.00 avg60=0 avg300=0 total=0\n", 0.0),
        ("some avg60=1.0 total=3\n", None),
        ("some avg10=abc\n", None),
        ("", None),
        ("garbage\n", None),
    ],
)
def test_psi_parser(text, value):
    assert parse_psi_some_avg10(text) == value


def test_psi_reader(tmp_path):
    path = tmp_path / "memory"
    path.write_text(PSI)
    assert read_psi_some_avg10(path) == 1.53
    assert read_psi_some_avg10(tmp_path / "absent") is None


def test_macos_memory_pressure_level_via_sysctl(monkeypatch):
    import os
    import types
    from pathlib import Path

    from telegraf_llm_input.sources import host as host_module
    from telegraf_llm_input.sources.macos_memory import parse_pressure_level

    assert parse_pressure_level("4\n") == 4 and parse_pressure_level("3") is None and parse_pressure_level("") is None
    fake_bin = Path(__file__).resolve().parent.parent / "fakes" / "bin"
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PRESSURE_LEVEL", "2")
    source = HostSource(HostConfig())
    assert "memory_pressure_level" not in gather(source).fields  # Linux: not asked
    monkeypatch.setattr(host_module, "sys", types.SimpleNamespace(platform="darwin"))
    fields = gather(source).fields
    assert fields["memory_pressure_level"] == 2  # macOS "warning"
    assert fields["swap_total_bytes"] >= 0  # psutil's swap works the same on macOS


def test_no_cpu_percent_until_there_is_an_interval_of_the_machines_own():
    """The first gather would measure the agent's own start-up: no cpu_percent; the second has the machine's."""
    source = HostSource(HostConfig())
    first = gather(source).fields
    assert "cpu_percent" not in first and first["mem_total_bytes"] > 0
    start = time.process_time()
    while time.process_time() - start < 0.05:  # some CPU of our own: several of the kernel's 10 ms ticks
        pass
    assert 0.0 <= gather(source).fields["cpu_percent"] <= 100.0


def test_cpu_busy_percent_is_psutils_arithmetic():
    from collections import namedtuple

    from telegraf_llm_input.sources.host import cpu_busy_percent

    T = namedtuple("T", "user nice system idle iowait irq softirq steal guest guest_nice")
    prev = T(100, 0, 50, 800, 50, 0, 0, 0, 10, 0)
    now = T(130, 0, 60, 850, 60, 0, 0, 0, 15, 0)  # 40 busy, 60 idle (iowait counted idle); guest inside user
    assert cpu_busy_percent(prev, now) == pytest.approx(40.0)
    assert cpu_busy_percent(now, now) is None
