"""Per-process GPU memory and busy time from recorded DRM fdinfo files (amdgpu, xe), and through the
process source for a real listening process whose /proc entry is the recorded one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from telegraf_llm_input.sources import drm_fdinfo
from telegraf_llm_input.sources.drm_fdinfo import DrmUsage, parse_fdinfo, process_clients
from tests.fakes.nvml import install_missing_library
from tests.sources.test_process import gather, process_sources, servers  # noqa: F401  (fixture)
from tests.support.procs import free_port

PROC = Path(__file__).resolve().parent.parent / "fixtures" / "proc"
KIB = 1024


def bump(fdinfo: Path, key: str, by: int) -> None:
    lines = []
    for line in fdinfo.read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            number, _, unit = value.strip().partition(" ")
            line = f"{name}:\t{int(number) + by}{' ' + unit if unit else ''}"
        lines.append(line)
    fdinfo.write_text("\n".join(lines) + "\n")


def test_amdgpu_client_keys_and_units():
    client = parse_fdinfo((PROC / "4242" / "fdinfo" / "5").read_text())
    assert client.driver == "amdgpu" and client.key == ("0000:2f:00.0", "42")
    assert client.vram_bytes == 8650752 * KIB  # drm-resident-vram, not gtt, not cpu
    assert client.engines_ns == {"gfx": 56369242, "compute": 734651900000, "dma": 4120032}


def test_xe_client_has_vram0_and_cycles():
    client = parse_fdinfo((PROC / "4243" / "fdinfo" / "8").read_text())
    assert client.driver == "xe" and client.vram_bytes == 4194304 * KIB
    assert client.cycles["ccs"] == (3200000000, 7655183225) and client.capacity["vcs"] == 2


def test_non_drm_fdinfo_is_no_client():
    assert parse_fdinfo((PROC / "4242" / "fdinfo" / "0").read_text()) is None


def test_dup_fd_is_one_client_and_memory_is_summed_once():
    clients = process_clients(4242, PROC)
    assert sorted(c.key for c in clients) == [("0000:2f:00.0", "42"), ("0000:2f:00.0", "42"), ("0000:2f:00.0", "43")]
    sample = DrmUsage(PROC).sample({4242})
    assert sample.vram_mib == pytest.approx((8650752 + 16384) / 1024)  # client 42 once, plus 43
    assert sample.busy_percent is None  # one sample: no interval yet


def test_busy_percent_over_the_interval(tmp_path):
    proc = tmp_path / "proc"
    shutil.copytree(PROC, proc, symlinks=True)
    usage = DrmUsage(proc)
    usage.sample({4242, 4243}, now_s=100.0)
    # 2 s later: compute engine of client 42 ran 1.5 s (fd 6 is the same client: not counted twice),
    # the xe ccs engine ran 25% of its cycles.
    for fd in ("5", "6"):
        bump(proc / "4242" / "fdinfo" / fd, "drm-engine-compute", 1_500_000_000)
    bump(proc / "4243" / "fdinfo" / "8", "drm-cycles-ccs", 250_000)
    bump(proc / "4243" / "fdinfo" / "8", "drm-total-cycles-ccs", 1_000_000)
    assert usage.sample({4242}, now_s=102.0).busy_percent == pytest.approx(75.0)
    assert DrmUsage(proc).sample({4243}).busy_percent is None
    xe = DrmUsage(proc)
    xe.sample({4243}, now_s=1.0)
    bump(proc / "4243" / "fdinfo" / "8", "drm-cycles-ccs", 500_000)
    bump(proc / "4243" / "fdinfo" / "8", "drm-total-cycles-ccs", 1_000_000)
    assert xe.sample({4243}, now_s=2.0).busy_percent == pytest.approx(50.0)


def test_counter_dip_counts_as_idle_not_negative(tmp_path):
    proc = tmp_path / "proc"
    shutil.copytree(PROC, proc, symlinks=True)
    usage = DrmUsage(proc)
    usage.sample({4242}, now_s=10.0)
    for fd in ("5", "6"):
        bump(proc / "4242" / "fdinfo" / fd, "drm-engine-compute", -1000)
    assert usage.sample({4242}, now_s=11.0).busy_percent == 0.0


def test_unreadable_process_gives_no_fields(tmp_path):
    assert DrmUsage(tmp_path).sample({4242}).vram_mib is None


def test_process_source_reports_fdinfo_memory_and_busy(servers, tmp_path, monkeypatch):  # noqa: F811
    install_missing_library(monkeypatch)  # an AMD box: no NVML
    port = free_port()
    server = servers("127.0.0.1", port)
    proc = tmp_path / "proc"
    shutil.copytree(PROC / "4242", proc / str(server.pid), symlinks=True)
    monkeypatch.setattr(drm_fdinfo, "PROC_ROOT", proc)
    [source] = process_sources([{"url": f"http://127.0.0.1:{port}", "type": "llamacpp"}], gpu={"backends": ["amd"]})
    first = gather(source).fields
    assert first["pid"] == server.pid
    assert first["gpu_memory_used_mib"] == pytest.approx((8650752 + 16384) / 1024)
    assert "gpu_busy_percent" not in first
    for fd in ("5", "6"):
        bump(proc / str(server.pid) / "fdinfo" / fd, "drm-engine-compute", 10**15)  # far beyond the interval
    assert gather(source).fields["gpu_busy_percent"] == 100.0


def test_fdinfo_is_read_only_where_an_amd_or_intel_gpu_may_be(tmp_path):
    from telegraf_llm_input.config import parse_config

    def wanted(gpu: dict, platform: str = "linux") -> bool:
        return drm_fdinfo.wanted(parse_config({"gpu": gpu, "targets": []}).gpu, platform)

    mixed = str(PROC.parent / "sysfs" / "mixed-amd-intel")
    assert wanted({"sysfs_root": mixed})  # auto, and an AMD card is there
    assert not wanted({"sysfs_root": str(tmp_path)})  # auto on an NVIDIA-only box: no fd scanning
    assert wanted({"sysfs_root": str(tmp_path), "backends": ["intel"]})  # named: always
    assert not wanted({"sysfs_root": mixed, "backends": ["nvidia"]})
    assert not wanted({"sysfs_root": mixed, "enabled": False})
    assert not wanted({"sysfs_root": mixed}, "darwin")
