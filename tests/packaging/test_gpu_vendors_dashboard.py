"""One dashboard for every GPU vendor: NVIDIA (fake NVML), AMD and Intel (recorded sysfs) and Apple (recorded
ioreg plist) points go into one real InfluxDB measurement without a field-type conflict, and the dashboard's
GPU panels, as generated, show each vendor's values."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest

from telegraf_llm_input.config import parse_config
from telegraf_llm_input.lineprotocol import encode_batch
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import GatherContext, SourceEnv
from tests.fakes.nvml import FakeNvml

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
BOARD = ROOT / "packaging" / "grafana" / "dashboard-influxdb.json"
T = 1_764_633_600_000_000_000  # fixed: queries use an absolute window


def vendor_points(gpu: dict, host: str) -> list:
    config = parse_config({"gpu": gpu, "targets": [], "host": {"enabled": False}})
    out = []
    for source in build_sources(config, SourceEnv()):
        if source.name.startswith("gpu"):
            got = asyncio.run(source.gather(GatherContext(time_ns=T, deadline_s=5.0)))
            out += [m.with_tags({"host": host}) for m in got if m.measurement == "llm_gpu"]
    return out


def gpu_panel_queries() -> dict[str, list[str]]:
    board = json.loads(BOARD.read_text())
    return {
        p["title"]: [t["query"] for t in p["targets"]]
        for p in board["panels"]
        if p["type"] != "row" and any('FROM "llm_gpu"' in t["query"] for t in p["targets"])
    }


def run_panel(influxdb, db: str, query: str) -> dict[tuple[str, str], float]:
    q = query.replace("$timeFilter", f"time >= {T - 3_600_000_000_000} AND time <= {T + 3_600_000_000_000}").replace(
        "$__interval", "1h"
    )
    q = re.sub(r"/\^\$\w+\$/", "/.*/", q)
    answer = influxdb.query(q, db=db)
    out = {}
    for series in answer["results"][0].get("series", []):
        values = [row[1] for row in series["values"] if row[1] is not None]
        if values:
            out[(series["tags"]["host"], series["tags"]["index"])] = values[0]
    return out


def test_every_vendor_in_one_measurement_and_on_the_same_panels(influxdb, monkeypatch):
    FakeNvml().install(monkeypatch)
    monkeypatch.setenv("PATH", f"{ROOT / 'tests' / 'fakes' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_IOREG_PLIST", str(FIXTURES / "ioreg" / "m1pro.plist"))
    points = (
        vendor_points({"backends": ["nvidia"]}, "nv-box")
        + vendor_points(
            {"backends": ["amd", "intel"], "sysfs_root": str(FIXTURES / "sysfs" / "mixed-amd-intel")}, "amd-box"
        )
        + vendor_points({"backends": ["intel"], "sysfs_root": str(FIXTURES / "sysfs" / "intel-arc")}, "arc-box")
        + vendor_points({"backends": ["apple"]}, "mac")
    )
    assert {m.tags["vendor"] for m in points} == {"nvidia", "amd", "intel", "apple"}
    db = "gpu_vendors"
    influxdb.create_db(db)
    response = influxdb.write(db, encode_batch(points).text)
    assert response.status_code == 204, response.text  # a field typed differently by one vendor fails here

    panels = gpu_panel_queries()
    util = run_panel(influxdb, db, panels["GPU utilisation"][0])
    assert util[("amd-box", "1")] == 93 and util[("mac", "0")] == 34 and util[("nv-box", "0")] == 87
    used = run_panel(influxdb, db, panels["GPU memory used / total"][0])
    assert used[("amd-box", "1")] == pytest.approx(13312.0) and used[("mac", "0")] == pytest.approx(7332.328125)
    power = run_panel(influxdb, db, panels["Power draw"][0])
    assert power[("amd-box", "1")] == pytest.approx(231.0)
    assert ("mac", "0") not in power  # Apple: no power without root, absent rather than 0
    temperature = run_panel(influxdb, db, panels["Temperature"][0])
    assert temperature[("amd-box", "1")] == 61 and temperature[("arc-box", "1")] == 58
