"""The documented schema. The docs/metrics.md table, the Prometheus output's types and the dashboard
checks are all derived from here, so a renamed field fails a test instead of a dashboard.

`python -m telegraf_llm_input.docs` writes the table into docs/metrics.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from telegraf_llm_input.schema import gpu, probe, process, requests, server
from telegraf_llm_input.schema.agent import AGENT
from telegraf_llm_input.schema.base import Field, Measurement
from telegraf_llm_input.schema.host import HOST

ALL: tuple[Measurement, ...] = (
    *server.MEASUREMENTS,
    *probe.MEASUREMENTS,
    *gpu.MEASUREMENTS,
    *process.MEASUREMENTS,
    *requests.MEASUREMENTS,
    HOST,
    AGENT,
)
BY_NAME: dict[str, Measurement] = {m.name: m for m in ALL}


def lookup(measurement: str, field: str) -> Field | None:
    m = BY_NAME.get(measurement)
    return m.field(field) if m else None


_PROM_INVALID = re.compile(r"[^a-zA-Z0-9_]")
# Prometheus names carry base units, and promtool rejects abbreviated ones (`_ms`, `_s`, `_mb`):
# suffix -> (replacement, factor to multiply the value by). Longest suffixes first.
_PROM_UNITS = (
    ("_kib_s", "_bytes_per_second", 1024.0),
    ("_per_s", "_per_second", 1.0),
    ("_ms", "_seconds", 1e-3),
    ("_us", "_seconds", 1e-6),
    ("_ns", "_seconds", 1e-9),
    ("_sec", "_seconds", 1.0),
    ("_s", "_seconds", 1.0),
    ("_kib", "_bytes", 1024.0),
    ("_mib", "_bytes", 1024.0**2),
    ("_gib", "_bytes", 1024.0**3),
    ("_kb", "_bytes", 1e3),
    ("_mb", "_bytes", 1e6),
    ("_gb", "_bytes", 1e9),
)


_PROM_RESERVED = ("_total", "_count", "_sum", "_bucket")


def prometheus_unit(field: str) -> tuple[str, float]:
    """`ttft_p95_ms` -> (`ttft_p95_seconds`, 0.001): the field in base units, and the value's factor."""
    lower = field.lower()
    for suffix, new, factor in _PROM_UNITS:
        if lower.endswith(suffix) and len(field) > len(suffix):
            return field[: -len(suffix)] + new, factor
    return field, 1.0


def prometheus_name(measurement: str, field: str) -> str:
    """The Prometheus metric name of a field: `<measurement>_<field>` in base units, counters ending in `_total`,
    other names ending in a suffix Prometheus reserves for counters and histograms with `_value` appended
    (`llm_server_slots_total_value`: promtool rejects a gauge named `_total`).

    One rule for the exporter, the dashboards and the alert rules, so they cannot drift apart.
    """
    name = _PROM_INVALID.sub("_", f"{measurement}_{prometheus_unit(field)[0]}")
    if name[:1].isdigit():
        name = "_" + name
    doc = lookup(measurement, field)
    if doc is not None and doc.kind == "counter":
        if not name.endswith("_total"):
            name += "_total"
    elif name.endswith(_PROM_RESERVED):
        name += "_value"
    return name


def markdown(servers: Mapping[str, Sequence[str]] | None = None) -> str:
    """The schema table of docs/metrics.md (type: the field's line-protocol type, the same on every point).

    `servers`: llm_server field -> the server types giving it (from the server tables:
    `telegraf_llm_input.servers.fields.field_servers()`), written before the field's own note."""
    rows = ["| measurement | tags | field | type | unit | meaning |", "|---|---|---|---|---|---|"]
    for m in ALL:
        tags = ", ".join(f"`{t}`" for t in m.tags)
        rows.append(f"| **`{m.name}`** | {tags} | | | | {m.meaning} |")
        for f in m.fields:
            note = f.servers
            if m is server.SERVER and servers and f.name in servers:
                note = ", ".join(servers[f.name]) + (f"; {note}" if note else "")
            extra = f" ({note})" if note else ""
            kind = " Counter." if f.kind == "counter" else ""
            rows.append(f"| | | `{f.name}` | {f.type or 'per name'} | {f.unit} | {f.meaning}{kind}{extra} |")
    return "\n".join(rows) + "\n"
