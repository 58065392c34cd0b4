"""The documented schema. The README table, the Prometheus output's types and the dashboard
checks are all derived from here, so a renamed field fails a test instead of a dashboard.

`python -m telegraf_llm_input.schema` prints the README table.
"""

from __future__ import annotations

import re

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


_PROM_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


def prometheus_name(measurement: str, field: str) -> str:
    """The Prometheus metric name of a field: `<measurement>_<field>`, counters ending in `_total`.

    One rule for the exporter, the dashboards and the alert rules, so they cannot drift apart.
    """
    name = _PROM_INVALID.sub("_", f"{measurement}_{field}")
    if name[:1].isdigit():
        name = "_" + name
    doc = lookup(measurement, field)
    if doc is not None and doc.kind == "counter" and not name.endswith("_total"):
        name += "_total"
    return name


def markdown() -> str:
    """The README schema table."""
    rows = ["| measurement | tags | field | unit | meaning |", "|---|---|---|---|---|"]
    for m in ALL:
        tags = ", ".join(f"`{t}`" for t in m.tags)
        rows.append(f"| **`{m.name}`** | {tags} | | | {m.meaning} |")
        for f in m.fields:
            extra = f" ({f.servers})" if f.servers else ""
            kind = " Counter." if f.kind == "counter" else ""
            rows.append(f"| | | `{f.name}` | {f.unit} | {f.meaning}{kind}{extra} |")
    return "\n".join(rows) + "\n"
