"""The proxy's Prometheus page: counters, gauges and fixed-bucket histograms with labels; pure, no I/O.

Rendered in the text exposition format (0.0.4) with HELP and TYPE; `promtool check metrics` is clean on it
(tests/proxy). Label sets are made of what clients send (model names), so their number is capped: past
MAX_SERIES per family, new label sets are counted under `model="other"`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import TypeVar

from telegraf_llm_input.sinks.prometheus import escape_help, escape_label_value, format_value

MAX_SERIES = 256
"""Label sets per metric family; a client inventing model names must not grow the proxy's memory."""
OVERFLOW = "other"

Labels = tuple[str, ...]
"""Label values, in the order of the family's label names."""


class Family:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str]):
        self.name = name
        self.help = help
        self.labels = tuple(labels)

    def _key(self, series: dict, values: Labels) -> Labels:
        """The series a new label set goes to: its own while there is room, else `model="other"`'s."""
        if len(series) < MAX_SERIES:
            return values
        return tuple(OVERFLOW if n == "model" else v for n, v in zip(self.labels, values))

    def _label_text(self, values: Labels, extra: str = "") -> str:
        parts = [f'{n}="{escape_label_value(v)}"' for n, v in zip(self.labels, values)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def _head(self) -> list[str]:
        return [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(Family):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str]):
        super().__init__(name, help, labels)
        self.series: dict[Labels, float] = {}

    def inc(self, values: Labels, by: float = 1.0) -> None:
        series = self.series
        if values not in series:
            values = self._key(series, values)
        series[values] = series.get(values, 0.0) + by

    def value(self, values: Labels) -> float:
        return self.series.get(values, 0.0)

    def render(self) -> list[str]:
        return self._head() + [f"{self.name}{self._label_text(k)} {format_value(v)}" for k, v in self.series.items()]


class Gauge(Counter):
    kind = "gauge"


class Histogram(Family):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str], bounds: Sequence[float]):
        super().__init__(name, help, labels)
        self.bounds = tuple(sorted(float(b) for b in bounds))
        self._le = [repr(b) for b in self.bounds] + ["+Inf"]  # "1.0", as the official clients write it
        self.series: dict[Labels, list[float]] = {}
        """Label values -> per-bucket counts (not cumulative; the last is above every bound), then count, sum."""

    def observe(self, values: Labels, value: float) -> None:
        row = self.series.get(values)
        if row is None:
            key = self._key(self.series, values)
            row = self.series.get(key)
            if row is None:
                row = self.series[key] = [0.0] * (len(self.bounds) + 3)
        row[bisect_left(self.bounds, value)] += 1
        row[-2] += 1
        row[-1] += value

    def count(self, values: Labels) -> float:
        row = self.series.get(values)
        return row[-2] if row else 0.0

    def render(self) -> list[str]:
        out = self._head()
        for key, row in self.series.items():
            running = 0.0
            for le, n in zip(self._le, row):
                running += n
                bucket = self._label_text(key, 'le="' + le + '"')
                out.append(f"{self.name}_bucket{bucket} {format_value(running)}")
            labels = self._label_text(key)
            out.append(f"{self.name}_sum{labels} {format_value(row[-1])}")
            out.append(f"{self.name}_count{labels} {format_value(row[-2])}")
        return out


F = TypeVar("F", bound=Family)


class Registry:
    def __init__(self) -> None:
        self.families: list[Family] = []

    def add(self, family: F) -> F:
        self.families.append(family)
        return family

    def render(self) -> bytes:
        lines = [line for family in self.families for line in family.render()]
        return ("\n".join(lines) + "\n").encode()
