"""Build the Grafana dashboards and alert rules from one description.

One list of panels and one list of alerts, each naming measurements and fields of the documented
schema (telegraf_llm_input/schema). Rendered twice: InfluxQL for Telegraf/InfluxDB users, PromQL for
the Prometheus exporter. Run `python packaging/grafana/generate.py` after changing the schema or this
file; the generated files are committed and a test checks they are current.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from telegraf_llm_input.schema import BY_NAME, lookup, prometheus_name, prometheus_unit  # noqa: E402

HERE = Path(__file__).resolve().parent
PROM_UNITS = {"ms": "s", "mbytes": "bytes"}
FILTER_TAGS = ("host", "target", "model")


@dataclass(frozen=True)
class Q:
    """One series family in a panel: a field of a measurement, split by some tags."""

    measurement: str
    field: str
    by: tuple[str, ...] = ("target",)
    agg: str = "mean"  # mean | max | sum
    label: str = ""
    """Legend prefix (the field name when empty)."""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Q, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | bars | heatmap | state | stat
    width: int = 12
    description: str = ""
    max: float | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


S = "llm_server"
ROWS: tuple[Row, ...] = (
    Row("Overview", (
        Panel("Up / busy / loading", (Q(S, "up", agg="max"), Q(S, "busy", agg="max"), Q(S, "loading", agg="max")),
              kind="state", width=24, description="1 = yes. busy: alive but its metrics page timed out (llama.cpp while decoding)."),
        Panel("Requests running / waiting", (Q(S, "requests_running"), Q(S, "requests_waiting")),
              description="Waiting that keeps rising = overload."),
        Panel("Requests per second", (Q(S, "requests_per_s"), Q("llm_requests", "requests_per_s", by=("log",))), unit="reqps"),
        Panel("Error ratio", (Q(S, "error_ratio"), Q("llm_requests", "error_ratio", by=("log",))), unit="percentunit"),
        Panel("KV cache usage", (Q(S, "kv_cache_usage_ratio", agg="max"),), unit="percentunit", max=1),
    )),
    Row("Latency", (
        Panel("Time to first token (server)", (Q(S, "ttft_p50_ms", label="p50"), Q(S, "ttft_p95_ms", label="p95"),
                                              Q(S, "ttft_p99_ms", label="p99")), unit="ms",
              description="Includes queueing and prefill: read it with the prompt length."),
        Panel("Probe: first token, first answer, end to end", (Q("llm_probe", "ttft_ms"), Q("llm_probe", "ttfa_ms"),
                                                              Q("llm_probe", "e2e_ms")), unit="ms",
              description="What a client gets. Reasoning models: the first answer comes after the thinking."),
        Panel("Time per output token / inter-token latency", (Q(S, "tpot_p95_ms", label="tpot p95"),
                                                             Q(S, "itl_p95_ms", label="itl p95"),
                                                             Q("llm_probe", "tpot_ms", label="probe tpot")), unit="ms"),
        Panel("End-to-end latency", (Q(S, "e2e_p50_ms", label="p50"), Q(S, "e2e_p95_ms", label="p95"),
                                     Q(S, "e2e_p99_ms", label="p99")), unit="ms"),
        Panel("Queue and prefill time (p95)", (Q(S, "queue_p95_ms", label="queue p95"),
                                              Q(S, "prefill_p95_ms", label="prefill p95")), unit="ms"),
        Panel("Model load time (probe, cold starts)", (Q("llm_probe", "load_ms", agg="max"),), unit="ms",
              description="Ollama unloads idle models: a load shows up here and in TTFT after idle gaps."),
    )),
    Row("Throughput", (
        Panel("Tokens per second", (Q(S, "prompt_tokens_per_s", label="prompt"),
                                    Q(S, "generation_tokens_per_s", label="generation")), unit="short"),
        Panel("Token throughput", (Q(S, "generation_tokens_per_s", label="generation"),), kind="bars", unit="short"),
        Panel("Decode speed seen by the probe", (Q("llm_probe", "tokens_per_s"),
                                                 Q("llm_probe", "server_decode_tokens_per_s")), unit="short",
              description="< 10 tokens/s feels like dial-up, >= 20 reads fluently."),
        Panel("Preemptions", (Q(S, "preemptions_total", agg="max"),), unit="short"),
    )),
    Row("GPU", (
        Panel("GPU utilisation", (Q("llm_gpu", "utilization_gpu", by=("host", "index")),), kind="heatmap", unit="percent", width=24),
        Panel("GPU memory used / total", (Q("llm_gpu", "memory_used_mib", by=("host", "index"), label="used"),
                                          Q("llm_gpu", "memory_total_mib", by=("host", "index"), label="total")),
              unit="mbytes"),
        Panel("Power draw", (Q("llm_gpu", "power_draw_w", by=("host", "index")),
                             Q("llm_gpu", "power_limit_w", by=("host", "index"), label="limit")), unit="watt"),
        Panel("Temperature", (Q("llm_gpu", "temperature_gpu", by=("host", "index")),), unit="celsius"),
        Panel("Throttle reasons", (Q("llm_gpu", "throttle_power_cap", by=("host", "index"), agg="max"),
                                   Q("llm_gpu", "throttle_hw_slowdown", by=("host", "index"), agg="max"),
                                   Q("llm_gpu", "throttle_thermal", by=("host", "index"), agg="max")), kind="state"),
        Panel("Energy per generated token", (Q(S, "energy_j_per_token"),), unit="joule"),
        Panel("XID errors", (Q("llm_gpu", "xid_errors_total", by=("host", "index"), agg="max"),), unit="short"),
    )),
    Row("Model server process", (
        Panel("CPU", (Q("llm_process", "cpu_percent"),), unit="percent"),
        Panel("Resident memory", (Q("llm_process", "rss_bytes"),), unit="bytes"),
        Panel("GPU memory held", (Q("llm_process", "gpu_memory_used_mib"),), unit="mbytes"),
        Panel("Restarts and exposure", (Q("llm_process", "restarts_total", agg="max"),
                                        Q("llm_process", "exposed", agg="max")), kind="state",
              description="exposed = 1: the server listens on a non-loopback address."),
        Panel("Host swap and memory pressure", (Q("llm_host", "swap_used_percent", by=("host",)),
                                                Q("llm_host", "memory_pressure_some_avg10", by=("host",))),
              unit="percent", description="Swapping cuts tokens/s by an order of magnitude."),
    )),
    Row("Request log (A/B)", (
        Panel("Error ratio per group", (Q("llm_requests", "error_ratio", by=("*",)),), unit="percentunit",
              description="Grouped by every tag, e.g. prompt_version: compare variants."),
        Panel("p95 latency per group", (Q("llm_requests", "latency_p95_ms", by=("*",)),), unit="ms"),
        Panel("Requests per second per group", (Q("llm_requests", "requests_per_s", by=("*",)),), unit="reqps"),
        Panel("Completion tokens per second per group", (Q("llm_requests", "completion_tokens_per_s", by=("*",)),)),
    )),
    Row("Agent", (
        Panel("Gather time", (Q("llm_agent", "gather_ms", by=("host",)),), unit="ms"),
        Panel("Per-source time", (Q("llm_agent", "duration_ms", by=("host", "source")),), unit="ms"),
        Panel("Source errors", (Q("llm_agent", "errors", by=("host", "source"), agg="max"),)),
        Panel("Output buffer", (Q("llm_agent", "output_buffered_points", by=("host",), agg="max"),
                                Q("llm_agent", "output_dropped_points", by=("host",), agg="max")),
              description="Points waiting for the database, and points dropped because the buffer was full."),
    )),
)


@dataclass(frozen=True)
class Alert:
    uid: str
    title: str
    measurement: str
    field: str
    op: str  # > | < | ==
    threshold: float
    for_: str
    severity: str
    summary: str
    by: tuple[str, ...] = ("host", "target")
    mode: str = "value"  # value | increase (counter grew within the window) | growing (value rose over the window)
    window: str = "10m"
    divide_by: str | None = None
    """A second field of the same measurement: alert on field / divide_by."""


ALERTS: tuple[Alert, ...] = (
    Alert("llm-target-down", "Model server down", S, "up", "<", 1, "2m", "critical",
          "{{ $labels.target }} on {{ $labels.host }} does not answer."),
    Alert("llm-target-busy", "Model server busy for a long time", S, "busy", "==", 1, "10m", "warning",
          "{{ $labels.target }} is alive but its metrics page keeps timing out."),
    Alert("llm-ttft-p95-high", "TTFT p95 above 10 s", S, "ttft_p95_ms", ">", 10000, "5m", "warning",
          "Time to first token p95 on {{ $labels.target }} is above 10 s."),
    Alert("llm-error-ratio-high", "Error ratio above 5%", S, "error_ratio", ">", 0.05, "5m", "warning",
          "More than 5% of requests to {{ $labels.target }} fail."),
    Alert("llm-queue-growing", "Requests waiting keep growing", S, "requests_waiting", ">", 0, "10m", "warning",
          "The queue on {{ $labels.target }} grew over 10 minutes: overload.", mode="growing"),
    Alert("llm-kv-cache-full", "KV cache above 90%", S, "kv_cache_usage_ratio", ">", 0.9, "5m", "warning",
          "KV cache of {{ $labels.target }} is above 90%: requests will queue or be preempted."),
    Alert("llm-gpu-memory-full", "GPU memory above 95%", "llm_gpu", "memory_used_mib", ">", 0.95, "5m", "warning",
          "GPU {{ $labels.index }} on {{ $labels.host }} is above 95% memory.", by=("host", "index"),
          divide_by="memory_total_mib"),
    Alert("llm-gpu-throttling", "GPU throttling (thermal or hardware slowdown)", "llm_gpu", "throttle_hw_slowdown", ">", 0,
          "5m", "warning", "GPU {{ $labels.index }} on {{ $labels.host }} is slowed down by hardware.",
          by=("host", "index")),
    Alert("llm-gpu-thermal", "GPU thermal throttling", "llm_gpu", "throttle_thermal", ">", 0, "5m", "warning",
          "GPU {{ $labels.index }} on {{ $labels.host }} is thermally throttled.", by=("host", "index")),
    Alert("llm-gpu-xid", "GPU XID errors", "llm_gpu", "xid_errors_total", ">", 0, "0m", "critical",
          "GPU {{ $labels.index }} on {{ $labels.host }} reported XID errors.", by=("host", "index"), mode="increase"),
    Alert("llm-process-restarted", "Model server process restarted", "llm_process", "restarts_total", ">", 0, "0m",
          "warning", "The process of {{ $labels.target }} restarted.", mode="increase", window="15m"),
    Alert("llm-server-exposed", "Model server exposed on the network", "llm_process", "exposed", "==", 1, "1m",
          "critical", "{{ $labels.target }} listens on a non-loopback address: it can be found and abused."),
    Alert("llm-agent-dropping", "Agent output buffer dropping points", "llm_agent", "output_dropped_points", ">", 0,
          "0m", "warning", "The agent on {{ $labels.host }} dropped buffered points: the database was away too long.",
          by=("host",), mode="increase", window="15m"),
)


def _ensure_documented(measurement: str, field_name: str) -> None:
    if lookup(measurement, field_name) is None:
        raise SystemExit(f"generate.py: {measurement}.{field_name} is not in the schema (telegraf_llm_input/schema)")


def _tags(measurement: str) -> tuple[str, ...]:
    """The measurement's documented tags, plus `host`: the agent adds it to every metric."""
    m = BY_NAME.get(measurement)
    return ("host", *(t for t in m.tags if t != "host")) if m else ("host",)


# ---------------------------------------------------------------- InfluxQL


def _influx_where(measurement: str) -> str:
    conds = ["$timeFilter"]
    for tag in FILTER_TAGS:
        if tag in _tags(measurement):
            conds.append(f'"{tag}" =~ /^${tag}$/')
    return " AND ".join(conds)


def influxql(q: Q) -> str:
    _ensure_documented(q.measurement, q.field)
    doc = lookup(q.measurement, q.field)
    select = f'{q.agg}("{q.field}")'
    if doc is not None and doc.kind == "counter":
        select = f'non_negative_difference(last("{q.field}"))'
    group = ["time($__interval)"]
    group += ["*"] if q.by == ("*",) else [f'"{t}"' for t in q.by]
    return (f'SELECT {select} AS "{q.label or q.field}" FROM "{q.measurement}" '
            f'WHERE {_influx_where(q.measurement)} GROUP BY {", ".join(group)} fill(null)')


def promql(q: Q) -> str:
    _ensure_documented(q.measurement, q.field)
    doc = lookup(q.measurement, q.field)
    labels = ", ".join(f'{t}=~"${t}"' for t in FILTER_TAGS if t in _tags(q.measurement))
    selector = f"{prometheus_name(q.measurement, q.field)}{{{labels}}}"
    if doc is not None and doc.kind == "counter":
        selector = f"increase({selector}[$__rate_interval])"
    if q.by == ("*",):
        return selector
    agg = {"mean": "avg", "max": "max", "sum": "sum"}[q.agg]
    return f"{agg} by ({', '.join(q.by)}) ({selector})"


def _legend_influx(q: Q) -> str:
    if q.by == ("*",):
        return ""
    return " ".join([q.label or q.field] + [f"$tag_{t}" for t in q.by if t != "host" or len(q.by) == 1])


def _legend_prom(q: Q) -> str:
    if q.by == ("*",):
        return ""
    return " ".join([q.label or q.field] + ["{{" + t + "}}" for t in q.by if t != "host" or len(q.by) == 1])


# ---------------------------------------------------------------- dashboard JSON


def _panel_json(panel: Panel, pid: int, x: int, y: int, flavour: str) -> dict:
    ds = {"type": flavour, "uid": "${DS}"}
    targets = []
    for i, q in enumerate(panel.queries):
        ref = chr(ord("A") + i)
        if flavour == "influxdb":
            targets.append({"refId": ref, "datasource": ds, "query": influxql(q), "rawQuery": True,
                            "resultFormat": "time_series", "alias": _legend_influx(q)})
        else:
            targets.append({"refId": ref, "datasource": ds, "expr": promql(q), "legendFormat": _legend_prom(q),
                            "range": True})
    # The exporter writes base units (ms -> seconds, MiB -> bytes): the Prometheus panels follow.
    unit = PROM_UNITS.get(panel.unit, panel.unit) if flavour == "prometheus" else panel.unit
    defaults: dict = {"unit": unit}
    if panel.max is not None:
        defaults["max"] = panel.max
    kind = {"timeseries": "timeseries", "bars": "timeseries", "heatmap": "heatmap", "state": "state-timeline",
            "stat": "stat"}[panel.kind]
    options: dict = {"legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
                     "tooltip": {"mode": "multi", "sort": "desc"}}
    if panel.kind == "bars":
        defaults["custom"] = {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1}
    if panel.kind == "heatmap":
        options = {"calculate": False, "yAxis": {"axisPlacement": "left"}, "rowsFrame": {"layout": "auto"},
                   "color": {"mode": "scheme", "scheme": "Turbo", "steps": 64}, "cellGap": 1,
                   "tooltip": {"show": True, "yHistogram": False}}
    height = 8 if panel.kind != "state" else 6
    return {"id": pid, "type": kind, "title": panel.title, "description": panel.description, "datasource": ds,
            "gridPos": {"h": height, "w": panel.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options, "targets": targets}


def _variables(flavour: str) -> list[dict]:
    ds = {"type": flavour, "uid": "${DS}"}
    variables: list[dict] = [{"name": "DS", "label": "Data source", "type": "datasource", "query": flavour,
                              "current": {}, "hide": 0, "refresh": 1}]
    if flavour == "influxdb":
        queries = {
            "host": 'SHOW TAG VALUES FROM "llm_agent" WITH KEY = "host"',
            "target": 'SHOW TAG VALUES FROM "llm_server" WITH KEY = "target" WHERE "host" =~ /^$host$/',
            "model": 'SHOW TAG VALUES FROM "llm_server" WITH KEY = "model" WHERE "target" =~ /^$target$/',
        }
    else:
        up = prometheus_name("llm_server", "up")
        queries = {
            "host": f"label_values({prometheus_name('llm_agent', 'gathers')}, host)",
            "target": f'label_values({up}{{host=~"$host"}}, target)',
            "model": f'label_values({up}{{target=~"$target"}}, model)',
        }
    for name, query in queries.items():
        variables.append({"name": name, "label": name, "type": "query", "datasource": ds, "query": query,
                          "definition": query, "includeAll": True, "multi": True, "allValue": ".*",
                          "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1, "hide": 0})
    return variables


def dashboard(flavour: str) -> dict:
    panels: list[dict] = []
    pid, y = 1, 0
    for row in ROWS:
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        x = 0
        row_h = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + row_h
                row_h = 0
            pj = _panel_json(panel, pid, x, y, flavour)
            panels.append(pj)
            pid += 1
            x += panel.width
            row_h = max(row_h, pj["gridPos"]["h"])
        y += row_h
    name = "InfluxDB" if flavour == "influxdb" else "Prometheus"
    return {
        "uid": f"telegraf-llm-input-{flavour}",
        "title": f"LLM model server ({name})",
        "description": "telegraf-llm-input: model server, probe, GPU, process, request log. Generated by packaging/grafana/generate.py.",
        "tags": ["llm", "telegraf-llm-input"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "graphTooltip": 1,
        "templating": {"list": _variables(flavour)},
        "annotations": {"list": []},
        "panels": panels,
    }


# ---------------------------------------------------------------- alerts


def prometheus_rules() -> dict:
    rules = []
    for a in ALERTS:
        _ensure_documented(a.measurement, a.field)
        metric = prometheus_name(a.measurement, a.field)
        threshold = a.threshold if a.divide_by else a.threshold * prometheus_unit(a.field)[1]
        if a.mode == "increase":
            expr = f"increase({metric}[{a.window}]) {a.op} {threshold:g}"
        elif a.mode == "growing":
            expr = f"delta({metric}[{a.window}]) > 0 and {metric} > {threshold:g}"
        elif a.divide_by:
            _ensure_documented(a.measurement, a.divide_by)
            expr = f"{metric} / {prometheus_name(a.measurement, a.divide_by)} {a.op} {a.threshold:g}"
        else:
            expr = f"{metric} {a.op} {threshold:g}"
        rule = {"alert": "".join(w.capitalize() for w in a.uid.split("-")), "expr": expr,
                "labels": {"severity": a.severity}, "annotations": {"summary": a.summary, "title": a.title}}
        if a.for_ != "0m":
            rule["for"] = a.for_
        rules.append(rule)
    return {"groups": [{"name": "telegraf-llm-input", "rules": rules}]}


def _influx_alert_query(a: Alert) -> str:
    if a.mode == "increase":
        select = f'non_negative_difference(last("{a.field}"))'
    elif a.divide_by:
        select = f'last("{a.field}") / last("{a.divide_by}")'
    else:
        select = f'last("{a.field}")'
    group = ", ".join(f'"{t}"' for t in a.by)
    return f'SELECT {select} FROM "{a.measurement}" WHERE $timeFilter GROUP BY time(1m), {group} fill(none)'


def _seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def grafana_rules() -> dict:
    """Grafana unified alerting file provisioning (InfluxDB datasource; UID from $LLM_INFLUXDB_UID)."""
    rules = []
    for a in ALERTS:
        _ensure_documented(a.measurement, a.field)
        window = max(_seconds(a.window), 600)
        if a.mode == "growing":
            reducer_a = {"refId": "B", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
                         "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"}}
            first = {"refId": "F", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
                     "model": {"refId": "F", "type": "reduce", "expression": "A", "reducer": "min"}}
            cond = {"refId": "C", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
                    "model": {"refId": "C", "type": "math", "expression": f"$B > $F && $B > {a.threshold:g}"}}
            steps = [reducer_a, first, cond]
        else:
            reducer = "sum" if a.mode == "increase" else "last"
            evaluator = {">": "gt", "<": "lt", "==": "within_range"}[a.op]
            params = [a.threshold - 0.5, a.threshold + 0.5] if a.op == "==" else [a.threshold]
            steps = [
                {"refId": "B", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
                 "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": reducer}},
                {"refId": "C", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
                 "model": {"refId": "C", "type": "threshold", "expression": "B",
                           "conditions": [{"evaluator": {"type": evaluator, "params": params}}]}},
            ]
        rules.append({
            "uid": a.uid,
            "title": a.title,
            "condition": "C",
            "data": [{"refId": "A", "datasourceUid": "${LLM_INFLUXDB_UID}",
                      "relativeTimeRange": {"from": window, "to": 0},
                      "model": {"refId": "A", "query": _influx_alert_query(a), "rawQuery": True,
                                "resultFormat": "time_series"}}] + steps,
            "for": a.for_,
            "noDataState": "OK",
            "execErrState": "Error",
            "labels": {"severity": a.severity},
            "annotations": {"summary": a.summary.replace("$labels", "$labels")},
        })
    return {"apiVersion": 1, "groups": [{"orgId": 1, "name": "telegraf-llm-input", "folder": "LLM",
                                         "interval": "1m", "rules": rules}]}


OUTPUTS = {
    HERE / "dashboard-influxdb.json": lambda: json.dumps(dashboard("influxdb"), indent=2) + "\n",
    HERE / "dashboard-prometheus.json": lambda: json.dumps(dashboard("prometheus"), indent=2) + "\n",
    HERE / "alerts" / "telegraf-llm-input.yaml": lambda: _yaml(grafana_rules()),
    ROOT / "packaging" / "prometheus" / "alerts.yml": lambda: _yaml(prometheus_rules()),
}


def _yaml(data: dict) -> str:
    return "# Generated by packaging/grafana/generate.py from the schema; do not edit by hand.\n" + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, width=120)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, render in OUTPUTS.items():
        text = render()
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale generated files (run python packaging/grafana/generate.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
