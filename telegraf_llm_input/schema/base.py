"""Types for the documented schema: every measurement, tag and field the agent emits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["gauge", "counter", "string"]
LineType = Literal["float", "int", "bool", "string"]
LINE_TYPES: tuple[str, ...] = ("float", "int", "bool", "string")


@dataclass(frozen=True)
class Field:
    name: str
    unit: str
    meaning: str
    kind: Kind = "gauge"
    """`counter`: monotonic total (Prometheus output types it as a counter)."""
    servers: str = ""
    """Which servers (or sources) give it, when not all."""
    type: LineType | None = None
    """Its line-protocol type, the same on every point forever (InfluxDB rejects a point that changes it).
    Default: `string` for string fields, else `float`; counts say `int`. None only for a bare `*`."""

    def __post_init__(self) -> None:
        if self.type is None and self.name != "*":
            object.__setattr__(self, "type", "string" if self.kind == "string" else "float")
        if self.type is not None and self.type not in LINE_TYPES:
            raise ValueError(f"field {self.name}: line-protocol type {self.type!r} is not one of {LINE_TYPES}")


@dataclass(frozen=True)
class Measurement:
    name: str
    meaning: str
    tags: tuple[str, ...]
    fields: tuple[Field, ...]

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
