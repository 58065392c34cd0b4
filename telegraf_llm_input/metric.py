"""The one value that flows from sources to sinks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import FrozenInstanceError, dataclass
from typing import cast

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


class Rendered(Metric):
    """A metric that also carries its line-protocol line, filled into a cached template by whoever made it (the
    agent's own points: the same series and field keys every gather, only the values change). Line-protocol
    sinks write `line`; the others read the fields, which say the same. A copy (`dataclasses.replace`, a
    processor's) has no line and is encoded as any metric.

    Made from the parts its line was filled in from (`of`): the fields dict is made only when read (by a sink that
    reads fields, a test), not every gather for a line-protocol sink that never reads it. Immutable, as `Metric`."""

    __slots__ = ("line", "_parts")
    line: str
    """Set by `of` only: a copy has none (reading it raises AttributeError)."""
    _parts: tuple[str, Mapping[str, str], tuple[str, ...], tuple[FieldValue, ...]]
    """Measurement, tags, field keys, and the values the line was filled in with: the fields' (a float's may be its
    text, `lineprotocol.ms_text`), then `time_ns`."""

    def __init__(self, measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], time_ns: int):
        """A copy (`dataclasses.replace`): no line."""
        _parts(self, (measurement, tags, tuple(fields), (*fields.values(), time_ns)))

    @classmethod
    def of(
        cls,
        measurement: str,
        tags: Mapping[str, str],
        keys: tuple[str, ...],
        values: tuple[FieldValue, ...],
        line: str,
    ) -> Rendered:
        """The point of these field `keys` and `values` (the fields' values, then `time_ns`: the tuple its line's
        template was filled in with; a float's value may be its text), and its `line`. Two slots set, no dict: an idle interval's point cost ~9 k
        instructions with its fields dict and five slots."""
        metric = _new(cls)
        _parts(metric, (measurement, tags, keys, values))
        _line(metric, line)
        return metric

    @property
    def measurement(self) -> str:
        return self._parts[0]

    @property
    def tags(self) -> Mapping[str, str]:
        return self._parts[1]

    @property
    def fields(self) -> Mapping[str, FieldValue]:
        _, _, keys, values = self._parts
        return rendered_fields(keys, values)

    @property
    def time_ns(self) -> int:
        return cast(int, self._parts[3][-1])

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


def rendered_fields(keys: tuple[str, ...], values: tuple[FieldValue, ...]) -> dict[str, FieldValue]:
    """The fields of `keys` and the values a line was filled in with (`Rendered`): a text there is a float's."""
    return {key: float(value) if type(value) is str else value for key, value in zip(keys, values)}


_new = object.__new__
_parts, _line = (vars(Rendered)[name].__set__ for name in ("_parts", "line"))


def clean_fields(fields: Mapping[str, FieldValue | None]) -> dict[str, FieldValue]:
    """Drop fields whose value is None, so sources can write `x=maybe_value` freely."""
    return {k: v for k, v in fields.items() if v is not None}
