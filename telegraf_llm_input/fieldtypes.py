"""One line-protocol type per (measurement, field), forever: the schema's, whatever the value.

InfluxDB fixes a field's type on its first write in a shard and rejects every later point that
writes it as another type (the whole point: `up`, tokens/s, everything). A value's Python type is
an accident of the server (a float counter that is 0, a JSON number without a fraction), so the
agent applies the schema's type in one place, after sources and processors and before every sink.

A value that cannot be written as its field's type (a fraction or NaN in an int field, an int past
int64, a negative count, text in a number field) is dropped and counted (`llm_agent`
`fields_dropped`), never written as another type. Fields the schema does not name (`json` and
`prometheus` targets' own names) already have one type from config or from the metric's kind.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, Final

from telegraf_llm_input.lineprotocol import INT64_MAX, INT64_MIN
from telegraf_llm_input.metric import FieldValue, Metric
from telegraf_llm_input.schema import lookup


class _Drop(enum.Enum):
    """What a converter returns for a value its field cannot hold (a singleton the type checker knows)."""

    DROP = enum.auto()


_DROP: Final = _Drop.DROP

# (Python type a right value already has, lowest, highest allowed, type name, counter?)
_Rule = tuple[type[Any] | None, float | None, float | None, str, bool]


@lru_cache(maxsize=16384)
def _spec(measurement: str, field: str) -> tuple[str, bool]:
    """(line-protocol type or "" when the schema does not say, counter?) of one field."""
    doc = lookup(measurement, field)
    if doc is None:
        return "", False
    return doc.type or "", doc.kind == "counter"


def _as_int(value: FieldValue, counter: bool) -> FieldValue | _Drop:
    if type(value) is float:
        if not value.is_integer():  # also NaN and ±Inf
            return _DROP
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        return int(value) if isinstance(value, bool) else _DROP
    if value < (0 if counter else INT64_MIN) or value > INT64_MAX:
        return _DROP
    return value


def _as_float(value: FieldValue, counter: bool) -> FieldValue | _Drop:
    if isinstance(value, str):
        return _DROP
    try:
        value = float(value)
    except OverflowError:
        return _DROP
    return _DROP if counter and value < 0 else value


def _as_bool(value: FieldValue, counter: bool) -> FieldValue | _Drop:
    return value if isinstance(value, bool) else _DROP


def _as_string(value: FieldValue, counter: bool) -> FieldValue | _Drop:
    return value if isinstance(value, str) else _DROP


def _untyped(value: FieldValue, counter: bool) -> FieldValue | _Drop:
    """A field the schema leaves open keeps its type; only an int past int64 cannot be written."""
    if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        return _DROP
    return value


_CONVERT: dict[str, Callable[[FieldValue, bool], FieldValue | _Drop]] = {
    "int": _as_int,
    "float": _as_float,
    "bool": _as_bool,
    "string": _as_string,
    "": _untyped,
}
_PYTYPE: dict[str, type[Any]] = {"int": int, "float": float, "bool": bool, "string": str}
_INF = float("inf")


def _rule(measurement: str, field: str) -> _Rule:
    """(Python type a value already has when right, lowest, highest allowed, type name, counter?)."""
    kind, counter = _spec(measurement, field)
    if kind == "int":
        return int, (0 if counter else INT64_MIN), INT64_MAX, kind, counter
    if kind == "float":
        return float, (0.0 if counter else -_INF), _INF, kind, counter
    return _PYTYPE.get(kind), None, None, kind, counter


class Conformer:
    """Applies the schema's types; counts what it had to drop (one warning per field)."""

    def __init__(self, warn: Callable[..., object] | None = None) -> None:
        self.dropped = 0
        self._warned: set[tuple[str, str]] = set()
        self._warn = warn
        self._rules: dict[str, dict[str, _Rule]] = {}

    def conform(self, metrics: Iterable[Metric]) -> list[Metric]:
        out: list[Metric] = []
        rules_by_measurement = self._rules
        for m in metrics:
            rules = rules_by_measurement.get(m.measurement)
            if rules is None:
                if len(rules_by_measurement) > 1024:  # user-chosen measurements: bounded
                    rules_by_measurement.clear()
                rules = rules_by_measurement[m.measurement] = {}
            fields = m.fields
            changed: dict[str, FieldValue] | None = None
            for key, value in fields.items():
                rule = rules.get(key)
                if rule is None:
                    if len(rules) > 4096:
                        rules.clear()
                    rule = rules[key] = _rule(m.measurement, key)
                pytype, low, high, kind, counter = rule
                # type(value) is pytype: a number when low is not None (mypy cannot see it)
                if type(value) is pytype and (low is None or low <= value <= high):  # type: ignore[operator]
                    continue  # already right: the common case
                new = _CONVERT[kind](value, counter)
                if new is value:
                    continue
                if changed is None:
                    changed = dict(fields)
                if new is _DROP:
                    del changed[key]
                    self._dropped(m.measurement, key, value, kind)
                else:
                    changed[key] = new
            out.append(m if changed is None else Metric(m.measurement, m.tags, changed, m.time_ns))
        return out

    def _dropped(self, measurement: str, field: str, value: FieldValue, kind: str) -> None:
        self.dropped += 1
        if self._warn is not None and (measurement, field) not in self._warned and len(self._warned) < 1024:
            self._warned.add((measurement, field))
            shown = value if not isinstance(value, str) else "a string"
            self._warn(
                "%s field %s: value %s does not fit its type %s; dropped (counted in llm_agent fields_dropped)",
                measurement,
                field,
                shown,
                kind or "int64",
            )
