"""Dashboards and alert rules: generated from one description, and every name they use is documented."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml

from telegraf_llm_input.schema import ALL, BY_NAME, lookup, prometheus_name
from telegraf_llm_input.servers.fields import fields_of
from telegraf_llm_input.servertypes import TYPES
from tests.support.procs import find_binary

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "packaging" / "grafana"
PROM_RULES = ROOT / "packaging" / "prometheus" / "alerts.yml"
PROM_NAMES = {prometheus_name(m.name, f.name): (m.name, f.name) for m in ALL for f in m.fields if "*" not in f.name}


def _generator():
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _panels(path: Path) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    return _generator().all_panels(json.loads(path.read_text()))


def _documented_prometheus_name(name: str) -> bool:
    """A metric of a documented field, a `*` family member (requests_finished_length_total) included."""
    if name in PROM_NAMES:
        return True
    for m in ALL:
        if name.startswith(m.name + "_") and m.field(name[len(m.name) + 1 :]) is not None:
            return prometheus_name(m.name, name[len(m.name) + 1 :]) == name
    return False


def test_generated_files_are_current():
    assert _generator().main(["--check"]) == 0, "run: python packaging/grafana/generate.py"


@pytest.mark.parametrize("flavour", ["influxdb", "prometheus"])
def test_dashboard_is_importable_as_is(flavour):
    board = json.loads((GRAFANA / f"dashboard-{flavour}.json").read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS"]["type"] == "datasource" and variables["DS"]["query"] == flavour
    assert {"host", "target", "model"} <= set(variables)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    text = json.dumps(board)
    assert "localhost" not in text and "127.0.0.1" not in text, "no hard-coded hosts"
    for panel in _panels(GRAFANA / f"dashboard-{flavour}.json"):
        assert panel["datasource"]["uid"] == "${DS}"
        assert panel["targets"], panel["title"]
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    titles = " ".join(p["title"] for p in board["panels"] if p["type"] == "row")
    for row in (
        "Fleet",
        "Overview",
        "Errors",
        "Latency",
        "Probe",
        "llama.cpp",
        "Ollama",
        "vLLM",
        "GPU",
        "process",
        "Request log",
        "Agent",
    ):
        assert row in titles


INFLUX_FROM = re.compile(r'FROM "([^"]+)"')
INFLUX_FIELD = re.compile(r'(?:mean|max|sum|last|min|count)\("([^"]+)"\)')


def test_every_influxql_query_names_documented_fields():
    seen = 0
    for panel in _panels(GRAFANA / "dashboard-influxdb.json"):
        for target in panel["targets"]:
            query = target["query"]
            (measurement,) = INFLUX_FROM.findall(query)  # a subquery's outer FROM is the inner query
            assert measurement in BY_NAME, f"{panel['title']}: unknown measurement {measurement}"
            fields = INFLUX_FIELD.findall(query)
            assert fields, query
            for field in fields:
                assert lookup(measurement, field), f"{panel['title']}: {measurement}.{field} is not documented"
                seen += 1
            for tag in re.findall(r'"(\w+)" =~', query):
                assert tag == "host" or tag in BY_NAME[measurement].tags, f"{measurement} has no tag {tag}"
    assert seen > 40


PROM_METRIC = re.compile(r"\b(llm_[a-z0-9_]+)\b")


def test_every_promql_query_names_documented_metrics():
    seen = 0
    for panel in _panels(GRAFANA / "dashboard-prometheus.json"):
        for target in panel["targets"]:
            names = PROM_METRIC.findall(target["expr"])
            assert names, target["expr"]
            for name in names:
                assert _documented_prometheus_name(name), f"{panel['title']}: {name} is not a documented metric"
                seen += 1
    assert seen > 40


def test_a_renamed_field_breaks_generation(monkeypatch):
    """The cross-check has teeth: a panel naming an undocumented field fails to generate."""
    gen = _generator()
    bad = gen.Q("llm_server", "ttft_p95_millis")
    with pytest.raises(SystemExit, match="not in the schema"):
        gen.influxql(bad)
    with pytest.raises(SystemExit, match="not in the schema"):
        gen.promql(bad)


def test_prometheus_rules_pass_promtool():
    promtool = find_binary("promtool")
    if promtool is None:
        pytest.skip("promtool not installed: apt-get install prometheus (scripts/test.sh does)")
    result = subprocess.run([promtool, "check", "rules", str(PROM_RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_prometheus_rules_cover_the_alerts_and_use_documented_metrics():
    rules = yaml.safe_load(PROM_RULES.read_text())["groups"][0]["rules"]
    exprs = "\n".join(r["expr"] for r in rules)
    for name in PROM_METRIC.findall(exprs):
        assert name in PROM_NAMES, name
    for measurement, field in (
        ("llm_server", "up"),
        ("llm_server", "busy"),
        ("llm_server", "ttft_p95_ms"),
        ("llm_server", "error_ratio"),
        ("llm_server", "requests_waiting"),
        ("llm_server", "kv_cache_usage_ratio"),
        ("llm_gpu", "memory_used_mib"),
        ("llm_gpu", "throttle_hw_slowdown"),
        ("llm_gpu", "throttle_thermal"),
        ("llm_gpu", "xid_errors_total"),
        ("llm_process", "restarts_total"),
        ("llm_process", "exposed"),
        ("llm_agent", "output_dropped_points"),
    ):
        needed = prometheus_name(measurement, field)
        assert needed in exprs, needed
    # thresholds follow the exporter's base units: TTFT p95 over 10 s, whatever the field's unit
    assert f"{prometheus_name('llm_server', 'ttft_p95_ms')}[5m]) > 10\n" in exprs + "\n"


def test_grafana_alert_provisioning_is_well_formed():
    doc = yaml.safe_load((GRAFANA / "alerts" / "telegraf-llm-input.yaml").read_text())
    assert doc["apiVersion"] == 1
    rules = doc["groups"][0]["rules"]
    assert len({r["uid"] for r in rules}) == len(rules) >= 12
    for rule in rules:
        refs = {d["refId"] for d in rule["data"]}
        assert rule["condition"] in refs
        query = rule["data"][0]["model"]["query"]
        (measurement,) = INFLUX_FROM.findall(query)
        for field in re.findall(r'last\("([^"]+)"\)', query):
            assert lookup(measurement, field), (rule["uid"], field)


@pytest.mark.parametrize("flavour", ["influxdb", "prometheus"])
def test_legends_name_every_series_tag(flavour):
    """Two hosts with the same target name never merge, and a reader can tell every line apart."""
    gen = _generator()
    specs = [p for row in gen.ROWS for p in row.panels]
    panels = _panels(GRAFANA / f"dashboard-{flavour}.json")
    assert [p.title for p in specs] == [p["title"] for p in panels]
    for spec, panel in zip(specs, panels):
        for q, target in zip(spec.queries, panel["targets"]):
            legend = target["alias" if flavour == "influxdb" else "legendFormat"]
            query = target["query" if flavour == "influxdb" else "expr"]
            tags = q.total_by if q.total_by is not None else q.series_by
            assert "host" in tags, f"{panel['title']}: not split by host"
            for tag in ("target", "model"):
                if tag in BY_NAME[q.measurement].tags and q.total_by is None and spec.kind != "state":
                    assert tag in q.series_by, f"{panel['title']}: {q.field} not split by {tag}"
            for tag in tags:
                word = tag.lstrip("$")
                shown = f"$tag_{tag}" if flavour == "influxdb" else "{{" + tag + "}}"
                assert (shown if not tag.startswith("$") else "${" + word + "}") in legend, (panel["title"], legend)
                assert tag in query, (panel["title"], query)
            if flavour == "prometheus":
                assert not re.search(r"_(ms|mib)\b", legend), f"{panel['title']}: legend {legend!r} not in base units"


@pytest.mark.parametrize("flavour", ["influxdb", "prometheus"])
def test_counters_are_per_second_rates_on_both(flavour):
    gen = _generator()
    specs = [p for row in gen.ROWS for p in row.panels]
    seen = 0
    for spec, panel in zip(specs, _panels(GRAFANA / f"dashboard-{flavour}.json")):
        for q, target in zip(spec.queries, panel["targets"]):
            if lookup(q.measurement, q.field).kind != "counter":
                continue
            seen += 1
            if flavour == "influxdb":
                assert f'non_negative_derivative(last("{q.field}"), 1s)' in target["query"], panel["title"]
            else:
                assert target["expr"].count("rate(") == 1 and "[$__rate_interval])" in target["expr"], panel["title"]
                assert "increase(" not in target["expr"]
    assert seen >= 8


@pytest.mark.parametrize("flavour", ["influxdb", "prometheus"])
def test_state_timelines_map_their_values(flavour):
    states = [p for p in _panels(GRAFANA / f"dashboard-{flavour}.json") if p["type"] == "state-timeline"]
    assert len(states) >= 4
    for panel in states:
        (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
        assert set(mapping["options"]) == {"0", "1"}, panel["title"]
    (up,) = [p for p in states if p["title"] == "Up"]
    options = up["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert options["0"]["text"] == "down" and options["0"]["color"] == "red"
    assert options["1"]["color"] == "green"


def test_server_rows_and_variables():
    board = json.loads((GRAFANA / "dashboard-influxdb.json").read_text())
    assert "server_type" in {v["name"] for v in board["templating"]["list"]}
    rows = {p["title"]: p for p in board["panels"] if p["type"] == "row"}
    # Ollama, the server most people run, is open; the others are collapsed (their panels inside the row)
    top = board["panels"]
    at = top.index(rows["Ollama / LM Studio"])
    following = top[at + 1 :]
    open_panels = following[: next(i for i, p in enumerate(following) if p["type"] == "row")]
    assert not rows["Ollama / LM Studio"]["collapsed"] and open_panels
    assert at < top.index(rows["llama.cpp"]) < top.index(rows["vLLM / SGLang"])
    for name in ("llama.cpp", "Ollama / LM Studio", "vLLM / SGLang"):
        panels = rows[name]["panels"] if name != "Ollama / LM Studio" else open_panels
        assert name == "Ollama / LM Studio" or (rows[name]["collapsed"] and panels), name
        for panel in panels:
            assert all(
                '"server_type" =~ /^$server_type$/' in t["query"]
                for t in panel["targets"]
                if "llm_gpu" not in t["query"]
            ), panel["title"]


def test_panel_server_lists_name_server_types_that_give_the_field():
    """`servers=` names registry types; on a server field, only types whose adapter gives it."""
    _generator()  # imports the spec as `dashboard_spec`
    spec = sys.modules["dashboard_spec"]
    gives = {t: fields_of(t) for t in TYPES}
    for row in spec.ROWS:
        for panel in row.panels:
            assert set(panel.servers) <= set(TYPES), panel.title
            fields = [q.field for q in panel.queries if q.measurement == "llm_server"]
            givers = {t for t, own in gives.items() for f in fields for g in own if fnmatchcase(f, g)}
            if givers:  # a field some adapter gives (not `up`, nor a processor's)
                assert set(panel.servers) <= givers, f"{panel.title}: {sorted(set(panel.servers) - givers)}"
