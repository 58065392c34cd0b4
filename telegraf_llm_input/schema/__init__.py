"""The documented schema. The README table, the Prometheus output's types and the dashboard
checks are all derived from here, so a renamed field fails a test instead of a dashboard.

`python -m telegraf_llm_input.schema` prints the README table.
"""

from __future__ import annotations

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
