"""The one value that flows from sources to sinks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FieldValue = int | float | bool | str


@dataclass(frozen=True, slots=True)
class Metric:
    """One point: a measurement, its tags, its fields and a nanosecond timestamp.

    Sources build these; sinks serialise them. Neither side knows the other.
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def with_tags(self, extra: Mapping[str, str]) -> Metric:
        """A copy whose tags are `extra` overlaid by the metric's own (own tags win)."""
        if not extra:
            return self
        merged = dict(extra)
        merged.update(self.tags)
        return Metric(self.measurement, merged, self.fields, self.time_ns)


def clean_fields(fields: Mapping[str, FieldValue | None]) -> dict[str, FieldValue]:
    """Drop fields whose value is None, so sources can write `x=maybe_value` freely."""
    return {k: v for k, v in fields.items() if v is not None}
