"""The GPU start-up lines tell the truth: which backend was chosen, and no "no GPU metrics" while one is on."""

from __future__ import annotations

import logging

from telegraf_llm_input.sources.base import SourceEnv
from tests.fakes.nvml import FakeNvml, h100, install_missing_library
from tests.sources.test_gpu import records  # noqa: F401  (fixture)
from tests.sources.test_gpu_backends import MIXED, gather, sources


def messages(records) -> list[str]:  # noqa: F811
    return [r.getMessage() for r in records if r.name.endswith("gpu")]


def test_amd_without_nvml_names_the_backend_and_does_not_say_gpu_metrics_are_off(monkeypatch, records):  # noqa: F811
    install_missing_library(monkeypatch)
    srcs = sources({"sysfs_root": str(MIXED)})
    for s in srcs:
        gather(s)
    said = messages(records)
    assert any(m.startswith("GPU backend: amd (") and "card" in m for m in said), said
    (nvml_line,) = [m for m in said if "NVML unavailable" in m]
    assert nvml_line.startswith("no NVIDIA GPU:") and "GPU metrics from amd, intel" in nvml_line
    assert not any("disabled" in m or "no GPU metrics" in m for m in said)
    assert all(r.levelno == logging.INFO for r in records if r.name.endswith("gpu"))


def test_no_gpu_at_all_says_so_once(monkeypatch, tmp_path, records):  # noqa: F811
    install_missing_library(monkeypatch)
    for s in sources({"sysfs_root": str(tmp_path)}):
        gather(s)
    assert [m for m in messages(records) if "GPU" in m] == [
        "no NVIDIA GPU: NVML unavailable (NVML Shared Library Not Found); no GPU metrics"
    ]


def test_nvidia_backend_is_named_with_its_driver(monkeypatch, records):  # noqa: F811
    FakeNvml([h100(0)]).install(monkeypatch)
    env = SourceEnv()
    session = env.nvml_session()
    assert session.available
    assert any(m.startswith("GPU backend: nvidia (NVML, driver ") and "1 GPU(s)" in m for m in messages(records))
