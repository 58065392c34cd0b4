"""Percentiles of one interval's values: exact while few, a log-bucket sketch beyond a bound.

Exact percentiles use linear interpolation between order statistics, numpy's default
(`method="linear"`): for q in [0, 1] over n sorted values, rank h = q * (n - 1) and the result is
v[floor(h)] + (h - floor(h)) * (v[floor(h) + 1] - v[floor(h)]).

Past `exact_limit` values the accumulator folds them into a DDSketch-style sketch: value x > 0
goes to bucket i = ceil(log_gamma(x)) with gamma = (1 + a) / (1 - a), and bucket i stands for
2 * gamma**i / (gamma + 1). Any value in bucket i is within relative error `a` of that estimate, so a
sketch quantile is within a (default 1%) of the order statistic at rank floor(h) or ceil(h), i.e.
within 1% of the range the exact answer lies in. Zero and negative values (which latencies should
not have) are counted in a zero bucket that stands for 0. Memory: one counter per occupied bucket,
about 1150 buckets for the range 1 us .. 1e6 s at 1%.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (q in [0, 1]) of already sorted values, linear interpolation. Needs n >= 1."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no values")
    h = q * (n - 1)
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    frac = h - lo
    low = sorted_values[lo]
    return low + frac * (sorted_values[hi] - low) if frac else float(low)


class LogSketch:
    """Relative-error quantile sketch (DDSketch's log-bucket mapping, unbounded bucket count)."""

    def __init__(self, relative_accuracy: float = 0.01):
        if not 0 < relative_accuracy < 1:
            raise ValueError("relative_accuracy must be in (0, 1)")
        self.relative_accuracy = relative_accuracy
        self._gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._inv_log_gamma = 1.0 / math.log(self._gamma)
        self._buckets: dict[int, int] = {}
        self._zeros = 0
        self.count = 0

    def add(self, value: float) -> None:
        self.count += 1
        if value <= 0:
            self._zeros += 1
            return
        i = math.ceil(math.log(value) * self._inv_log_gamma)
        self._buckets[i] = self._buckets.get(i, 0) + 1

    def add_many(self, values: Sequence[float]) -> None:
        for v in values:
            self.add(v)

    def quantile(self, q: float) -> float:
        if self.count == 0:
            raise ValueError("quantile of an empty sketch")
        rank = q * (self.count - 1)
        seen = self._zeros
        if rank < seen:
            return 0.0
        for i in sorted(self._buckets):
            seen += self._buckets[i]
            if seen > rank:
                return 2.0 * self._gamma**i / (self._gamma + 1.0)
        return 2.0 * self._gamma ** max(self._buckets) / (self._gamma + 1.0)  # float rounding at q=1


class Accumulator:
    """One interval's values of one quantity: count, mean, percentiles, in bounded memory."""

    __slots__ = ("exact_limit", "relative_accuracy", "_values", "_sketch", "_sorted", "total")

    def __init__(self, exact_limit: int = 100_000, relative_accuracy: float = 0.01):
        self.exact_limit = exact_limit
        self.relative_accuracy = relative_accuracy
        self._values = array("d")
        self._sketch: LogSketch | None = None
        self._sorted: list[float] = []
        self.total = 0.0

    def add(self, value: float) -> None:
        self.total += value
        if self._sketch is None:
            self._values.append(value)
            if len(self._values) > self.exact_limit:
                self._sketch = LogSketch(self.relative_accuracy)
                self._sketch.add_many(self._values)
                self._values = array("d")
        else:
            self._sketch.add(value)

    @property
    def count(self) -> int:
        return self._sketch.count if self._sketch is not None else len(self._values)

    @property
    def exact(self) -> bool:
        return self._sketch is None

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """None when no value was added."""
        if self.count == 0:
            return None
        if self._sketch is not None:
            return self._sketch.quantile(q)
        if len(self._sorted) != len(self._values):
            self._sorted = sorted(self._values)
        return percentile(self._sorted, q)
