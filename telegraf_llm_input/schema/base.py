"""Types for the documented schema: every measurement, tag and field the agent emits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["gauge", "counter", "string"]


@dataclass(frozen=True)
class Field:
    name: str
    unit: str
    meaning: str
    kind: Kind = "gauge"
    """`counter`: monotonic total (Prometheus output types it as a counter)."""
    servers: str = ""
    """Which servers (or sources) give it, when not all."""


@dataclass(frozen=True)
class Measurement:
    name: str
    meaning: str
    tags: tuple[str, ...]
    fields: tuple[Field, ...]
    patterns: tuple[str, ...] = ()
    """Field-name patterns with `*` for families, e.g. `requests_finished_*_total`."""

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        for f in self.fields:
            # A bare `*` documents user-chosen names (json/prometheus targets): it vouches for nothing.
            if "*" in f.name and f.name != "*":
                head, _, tail = f.name.partition("*")
                if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
                    return f
        return None
