"""Build the Grafana dashboards and alert rules from one description (dashboard_spec.py).

dashboard_spec.py lists the rows, panels and alerts, each naming measurements and fields of the documented
schema (telegraf_llm_input/schema). Rendered here twice: InfluxQL for Telegraf/InfluxDB users, PromQL for the
Prometheus exporter; plus Grafana alert provisioning and Prometheus rules. Run
`python packaging/grafana/generate.py` after changing the schema or dashboard_spec.py; the generated files are
committed and a test checks they are current. docs/dashboards.md says what each row answers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import yaml  # noqa: E402
from dashboard_spec import AB_TAG, ALERTS, PROMETHEUS_JOB, ROWS, Alert, Panel, Q, Row  # noqa: E402,F401

from telegraf_llm_input.schema import BY_NAME, lookup, prometheus_name, prometheus_unit  # noqa: E402

PROM_UNITS = {"ms": "s", "mbytes": "bytes"}
FILTER_TAGS = ("host", "server_type", "target", "model")
"""Dashboard variables: every query on a measurement with the tag filters by it."""


def _ensure_documented(measurement: str, field_name: str) -> None:
    if lookup(measurement, field_name) is None:
        raise SystemExit(f"generate.py: {measurement}.{field_name} is not in the schema (telegraf_llm_input/schema)")


def _tags(measurement: str) -> tuple[str, ...]:
    """The measurement's documented tags, plus `host`: the agent adds it to every metric."""
    m = BY_NAME.get(measurement)
    return ("host", *(t for t in m.tags if t != "host")) if m else ("host",)


def _is_counter(q: Q) -> bool:
    doc = lookup(q.measurement, q.field)
    return doc is not None and doc.kind == "counter"


def _check(q: Q) -> None:
    _ensure_documented(q.measurement, q.field)
    for tag in (*q.series_by, *(q.total_by or ()), *(t for t, _ in q.where)):
        if tag != AB_TAG and tag not in _tags(q.measurement):
            raise SystemExit(f"generate.py: {q.measurement} has no tag {tag}")


# ---------------------------------------------------------------- InfluxQL


def _influx_tag(tag: str) -> str:
    return f'"{tag}"'


def _influx_where(q: Q) -> str:
    conds = ["$timeFilter"]
    for tag in FILTER_TAGS:
        if tag in _tags(q.measurement):
            conds.append(f'"{tag}" =~ /^${tag}$/')
    conds += [f'"{tag}" =~ /^{regex}$/' for tag, regex in q.where]
    return " AND ".join(conds)


def _influx_select(q: Q) -> str:
    if _is_counter(q):
        return f'non_negative_derivative(last("{q.field}"), 1s)'  # per second, like PromQL rate()
    return f'{q.agg}("{q.field}")'


def influxql(q: Q) -> str:
    _check(q)
    group = ", ".join(["time($__interval)", *map(_influx_tag, q.series_by)])
    if q.total_by is None:
        return (
            f'SELECT {_influx_select(q)} AS "{_label(q, "influxdb")}" FROM "{q.measurement}" '
            f"WHERE {_influx_where(q)} GROUP BY {group} fill(null)"
        )
    inner = (
        f'SELECT {_influx_select(q)} AS "{q.field}" FROM "{q.measurement}" '
        f"WHERE {_influx_where(q)} GROUP BY {group} fill(none)"
    )
    outer = ", ".join(["time($__interval)", *map(_influx_tag, q.total_by)])
    return (
        f'SELECT sum("{q.field}") AS "{_label(q, "influxdb")}" FROM ({inner}) '
        f"WHERE $timeFilter GROUP BY {outer} fill(null)"
    )


# ---------------------------------------------------------------- PromQL


def _prom_selector(q: Q) -> str:
    labels = [f'{t}=~"${t}"' for t in FILTER_TAGS if t in _tags(q.measurement)]
    labels += [f'{t}=~"{regex}"' for t, regex in q.where]
    return f"{prometheus_name(q.measurement, q.field)}{{{', '.join(labels)}}}"


def promql(q: Q) -> str:
    _check(q)
    selector = _prom_selector(q)
    if _is_counter(q):
        selector = f"rate({selector}[$__rate_interval])"
    agg = {"mean": "avg", "max": "max", "min": "min", "sum": "sum", "count": "count"}[q.agg]
    expr = f"{agg} by ({', '.join(q.series_by)}) ({selector})"
    if q.total_by is not None:
        expr = f"sum by ({', '.join(q.total_by)}) ({expr})"
    return expr


# ---------------------------------------------------------------- legends


def _label(q: Q, flavour: str) -> str:
    """The legend prefix. Prometheus values are in base units, so the default follows its names."""
    if q.label:
        return q.label
    return q.field if flavour == "influxdb" else prometheus_unit(q.field)[0]


def _legend(q: Q, flavour: str) -> str:
    tags = q.total_by if q.total_by is not None else q.series_by
    if flavour == "influxdb":
        names = ["$tag_${" + t[1:] + "}" if t.startswith("$") else f"$tag_{t}" for t in tags]
    else:
        names = ["{{${" + t[1:] + "}}}" if t.startswith("$") else "{{" + t + "}}" for t in tags]
    return " ".join([_label(q, flavour), *names])


# ---------------------------------------------------------------- dashboard JSON


def _mappings(panel: Panel) -> list[dict]:
    if not panel.mappings:
        return []
    return [
        {
            "type": "value",
            "options": {
                str(v): {"text": text, "color": colour, "index": i}
                for i, (v, text, colour) in enumerate(panel.mappings)
            },
        }
    ]


def _panel_json(panel: Panel, pid: int, x: int, y: int, flavour: str) -> dict:
    ds = {"type": flavour, "uid": "${DS}"}
    targets = []
    for i, q in enumerate(panel.queries):
        ref = chr(ord("A") + i)
        if flavour == "influxdb":
            targets.append(
                {
                    "refId": ref,
                    "datasource": ds,
                    "query": influxql(q),
                    "rawQuery": True,
                    "resultFormat": "time_series",
                    "alias": _legend(q, flavour),
                }
            )
        else:
            targets.append(
                {"refId": ref, "datasource": ds, "expr": promql(q), "legendFormat": _legend(q, flavour), "range": True}
            )
    # The exporter writes base units (ms -> seconds, MiB -> bytes): the Prometheus panels follow.
    unit = PROM_UNITS.get(panel.unit, panel.unit) if flavour == "prometheus" else panel.unit
    defaults: dict = {"unit": unit, "mappings": _mappings(panel)}
    if panel.max is not None:
        defaults["max"] = panel.max
    kind = {"timeseries": "timeseries", "bars": "timeseries", "heatmap": "heatmap", "state": "state-timeline"}[
        panel.kind
    ]
    options: dict = {
        "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    if panel.kind == "bars":
        defaults["custom"] = {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1}
    if panel.kind == "state":
        defaults["color"] = {"mode": "thresholds"}
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "transparent", "value": None}]}
        defaults["custom"] = {"fillOpacity": 80, "lineWidth": 0}
        options.update({"mergeValues": True, "showValue": "never", "rowHeight": 0.9})
    if panel.kind == "heatmap":
        options = {
            "calculate": False,
            "yAxis": {"axisPlacement": "left"},
            "rowsFrame": {"layout": "auto"},
            "color": {"mode": "scheme", "scheme": "Turbo", "steps": 64},
            "cellGap": 1,
            "tooltip": {"show": True, "yHistogram": False},
        }
    height = 8 if panel.kind != "state" else 7
    description = panel.description
    if panel.servers:
        description = (description + " " if description else "") + "Servers: " + ", ".join(panel.servers) + "."
    return {
        "id": pid,
        "type": kind,
        "title": panel.title,
        "description": description,
        "datasource": ds,
        "gridPos": {"h": height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }


def _variables(flavour: str) -> list[dict]:
    ds = {"type": flavour, "uid": "${DS}"}
    variables: list[dict] = [
        {
            "name": "DS",
            "label": "Data source",
            "type": "datasource",
            "query": flavour,
            "current": {},
            "hide": 0,
            "refresh": 1,
        }
    ]
    if flavour == "influxdb":
        queries = {
            "host": 'SHOW TAG VALUES FROM "llm_agent" WITH KEY = "host"',
            "server_type": 'SHOW TAG VALUES FROM "llm_server" WITH KEY = "server_type" WHERE "host" =~ /^$host$/',
            "target": 'SHOW TAG VALUES FROM "llm_server" WITH KEY = "target" WHERE "host" =~ /^$host$/ AND '
            '"server_type" =~ /^$server_type$/',
            "model": 'SHOW TAG VALUES FROM "llm_server" WITH KEY = "model" WHERE "host" =~ /^$host$/ AND '
            '"target" =~ /^$target$/',
        }
    else:
        up = prometheus_name("llm_server", "up")
        queries = {
            "host": f"label_values({prometheus_name('llm_agent', 'gathers')}, host)",
            "server_type": f'label_values({up}{{host=~"$host"}}, server_type)',
            "target": f'label_values({up}{{host=~"$host", server_type=~"$server_type"}}, target)',
            "model": f'label_values({up}{{host=~"$host", target=~"$target"}}, model)',
        }
    for name, query in queries.items():
        variables.append(
            {
                "name": name,
                "label": name,
                "type": "query",
                "datasource": ds,
                "query": query,
                "definition": query,
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"text": "All", "value": "$__all"},
                "refresh": 2,
                "sort": 1,
                "hide": 0,
            }
        )
    variables.append(
        {
            "name": AB_TAG[1:],
            "label": "A/B tag (request log)",
            "type": "textbox",
            "query": "prompt_version",
            "current": {"text": "prompt_version", "value": "prompt_version"},
            "hide": 0,
            "description": "A group_by key of your request log: one series per value.",
        }
    )
    return variables


def _row_panels(row: Row, pid: int, y: int, flavour: str) -> tuple[list[dict], int]:
    """The row's panels laid out from `y`; returns them and the y below them."""
    out = []
    x = row_h = 0
    for panel in row.panels:
        if x + panel.width > 24:
            x, y = 0, y + row_h
            row_h = 0
        pj = _panel_json(panel, pid, x, y, flavour)
        out.append(pj)
        pid += 1
        x += panel.width
        row_h = max(row_h, pj["gridPos"]["h"])
    return out, y + row_h


def dashboard(flavour: str) -> dict:
    panels: list[dict] = []
    pid, y = 1, 0
    for row in ROWS:
        row_json = {
            "id": pid,
            "type": "row",
            "title": row.title,
            "collapsed": row.collapsed,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        }
        children, below = _row_panels(row, pid + 1, y + 1, flavour)
        pid += 1 + len(children)
        panels.append(row_json)
        if row.collapsed:  # Grafana keeps a collapsed row's panels inside it
            row_json["panels"] = children
            y += 1
        else:
            panels.extend(children)
            y = below
    name = "InfluxDB" if flavour == "influxdb" else "Prometheus"
    return {
        "uid": f"telegraf-llm-input-{flavour}",
        "title": f"LLM model server ({name})",
        "description": "telegraf-llm-input: fleet, model servers, errors, probe, GPU, process, request log. "
        "Generated by packaging/grafana/generate.py; docs/dashboards.md says what each row answers.",
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


def all_panels(board: dict) -> list[dict]:
    """Every panel of a dashboard, those inside collapsed rows too (rows themselves left out)."""
    out = []
    for p in board["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels") or [])
        else:
            out.append(p)
    return out


# ---------------------------------------------------------------- alerts


def _prom_threshold(a: Alert) -> str:
    factor = 1.0 if a.divide_by else prometheus_unit(a.field)[1]
    return f"{a.threshold * factor:g}"


def prometheus_expr(a: Alert) -> str:
    _ensure_documented(a.measurement, a.field)
    metric = prometheus_name(a.measurement, a.field)
    t = _prom_threshold(a)
    if a.mode == "silent":
        job = f'job="{PROMETHEUS_JOB}"'
        # Scrape fails; or it answers but the agent has stopped gathering (its series expire); or none left.
        return (
            f"up{{{job}}} == 0 or (up{{{job}}} == 1 unless on (job, instance) {metric}{{{job}}}) "
            f"or absent_over_time({metric}{{{job}}}[{a.window}])"
        )
    if a.mode == "increase":
        # `and <metric>`: only while the series is reported; a dead agent's last increase resolves.
        return f"increase({metric}[{a.window}]) {a.op} {t} and {metric}"
    if a.mode == "growing":
        return f"deriv({metric}[{a.window}]) > 0 and min_over_time({metric}[{a.window}]) {a.op} {t}"
    if a.mode == "mean":
        return f"avg_over_time({metric}[{a.window}]) {a.op} {t}"
    if a.divide_by:
        _ensure_documented(a.measurement, a.divide_by)
        return f"{metric} / {prometheus_name(a.measurement, a.divide_by)} {a.op} {t}"
    return f"{metric} {a.op} {t}"


def prometheus_rules() -> dict:
    rules = []
    for a in ALERTS:
        rule = {
            "alert": "".join(w.capitalize() for w in a.uid.split("-")),
            "expr": prometheus_expr(a),
            "labels": {"severity": a.severity},
            "annotations": {"summary": a.summary, "title": a.title},
        }
        if a.for_ != "0m":
            rule["for"] = a.for_
        rules.append(rule)
    return {"groups": [{"name": "telegraf-llm-input", "rules": rules}]}


def _seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def grafana_query(a: Alert) -> tuple[str, int]:
    """The InfluxQL of an alert and the seconds of history it reads."""
    group = ", ".join(f'"{t}"' for t in a.by)
    sel = f'last("{a.field}")'
    window = 180  # the latest value: a series gone for 3 minutes (dead agent) drops out and resolves
    if a.mode == "silent":
        # fill(0): a host that stopped keeps a series (of zeros) for the hour read; the moving average over
        # three minutes reads 0 only when none of them had a point.
        return (
            f'SELECT moving_average(count("{a.field}"), 3) FROM "{a.measurement}" WHERE $timeFilter '
            f"GROUP BY time(1m), {group} fill(0)"
        ), 3600
    if a.mode in ("increase", "growing"):
        window = max(_seconds(a.window), 600)
    if a.mode == "increase":
        sel = f'non_negative_difference(last("{a.field}"))'
    elif a.mode == "mean":
        sel, window = f'mean("{a.field}")', _seconds(a.window)
    elif a.divide_by:
        sel = f'last("{a.field}") / last("{a.divide_by}")'
    return f'SELECT {sel} FROM "{a.measurement}" WHERE $timeFilter GROUP BY time(1m), {group} fill(none)', window


def _expr(ref: str, model: dict) -> dict:
    return {
        "refId": ref,
        "datasourceUid": "__expr__",
        "relativeTimeRange": {"from": 0, "to": 0},
        "model": {"refId": ref, **model},
    }


def _influx(ref: str, query: str, seconds: int) -> dict:
    return {
        "refId": ref,
        "datasourceUid": "${LLM_INFLUXDB_UID}",
        "relativeTimeRange": {"from": seconds, "to": 0},
        "model": {"refId": ref, "query": query, "rawQuery": True, "resultFormat": "time_series"},
    }


def grafana_rules() -> dict:
    """Grafana unified alerting file provisioning (InfluxDB datasource; UID from $LLM_INFLUXDB_UID)."""
    rules = []
    for a in ALERTS:
        _ensure_documented(a.measurement, a.field)
        query, seconds = grafana_query(a)
        data = [_influx("A", query, seconds)]
        if a.mode == "growing":
            data += [
                _expr("B", {"type": "reduce", "expression": "A", "reducer": "last"}),
                _expr("F", {"type": "reduce", "expression": "A", "reducer": "min"}),
                _expr("C", {"type": "math", "expression": f"$F {a.op} {a.threshold:g} && $B > $F"}),
            ]
        elif a.mode == "increase":
            # P: the series is still reported (last 2 minutes); a series missing there drops out of C.
            group = ", ".join(f'"{t}"' for t in a.by)
            data += [
                _influx(
                    "P", f'SELECT last("{a.field}") FROM "{a.measurement}" WHERE $timeFilter GROUP BY {group}', 120
                ),
                _expr("B", {"type": "reduce", "expression": "A", "reducer": "sum"}),
                _expr("R", {"type": "reduce", "expression": "P", "reducer": "count"}),
                _expr("C", {"type": "math", "expression": f"$B {a.op} {a.threshold:g} && $R > 0"}),
            ]
        else:
            reducer = "mean" if a.mode == "mean" else "last"
            evaluator = {">": "gt", "<": "lt", "==": "within_range"}[a.op]
            params = [a.threshold - 0.5, a.threshold + 0.5] if a.op == "==" else [a.threshold]
            data += [
                _expr("B", {"type": "reduce", "expression": "A", "reducer": reducer}),
                _expr(
                    "C",
                    {
                        "type": "threshold",
                        "expression": "B",
                        "conditions": [{"evaluator": {"type": evaluator, "params": params}}],
                    },
                ),
            ]
        rules.append(
            {
                "uid": a.uid,
                "title": a.title,
                "condition": "C",
                "data": data,
                "for": a.for_,
                "noDataState": "Alerting" if a.no_data_alerts else "OK",
                "execErrState": "Error",
                "labels": {"severity": a.severity},
                "annotations": {"summary": a.summary},
            }
        )
    return {
        "apiVersion": 1,
        "groups": [{"orgId": 1, "name": "telegraf-llm-input", "folder": "LLM", "interval": "1m", "rules": rules}],
    }


OUTPUTS = {
    HERE / "dashboard-influxdb.json": lambda: json.dumps(dashboard("influxdb"), indent=2) + "\n",
    HERE / "dashboard-prometheus.json": lambda: json.dumps(dashboard("prometheus"), indent=2) + "\n",
    HERE / "alerts" / "telegraf-llm-input.yaml": lambda: _yaml(grafana_rules()),
    ROOT / "packaging" / "prometheus" / "alerts.yml": lambda: _yaml(prometheus_rules()),
}


def _yaml(data: dict) -> str:
    return "# Generated by packaging/grafana/generate.py from the schema; do not edit by hand.\n" + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, width=120
    )


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
