"""Cumulative Prometheus histograms: build from a page, difference two scrapes, quantiles.

Why: the interval percentiles we emit must equal what Grafana computes with
`histogram_quantile(q, increase(x_bucket[...]))` from the same two snapshots, so the quantile
follows Prometheus' bucket interpolation (promql/quantile.go) step by step, including its
repair of non-monotonic buckets. Bucket bounds are always read from the page.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: the math needs no parser (discovery that finds nothing loads none)
    from .promtext import Sample

__all__ = [
    "Histogram",
    "LabelKey",
    "SeriesLayout",
    "bound_of",
    "collect",
    "layout",
    "delta",
    "increase",
    "quantile",
    "quantiles",
    "mean",
    "merge",
]

LabelKey = tuple[tuple[str, str], ...]
"""Sorted (label, value) pairs identifying one histogram series (without `le`)."""

_INF = math.inf
_SMALL_DELTA = 1e-12  # Prometheus' smallDeltaTolerance
_MIN_NORMAL = 2.2250738585072014e-308
_MAX_FLOAT = 1.7976931348623157e308


class Histogram:
    """Cumulative buckets sorted by bound, `+Inf` last (when present): their upper `bounds` and their `counts`.

    Held as the two sequences, not a `(bound, count)` pair per bucket: every scrape of a series read by a plan
    shares the plan's tuple of bounds, so a histogram kept between gathers holds its counts only (~13 KiB less a
    vLLM target). `Histogram(buckets, count, sum)` takes the pairs; `buckets` gives them. Not changed once made."""

    __slots__ = ("bounds", "counts", "count", "sum")
    __hash__ = None  # type: ignore[assignment]  # compared by value, as the dataclass it was

    def __init__(self, buckets: Iterable[tuple[float, float]], count: float, sum: float | None) -> None:
        pairs = list(buckets)
        self.bounds: Sequence[float] = tuple(upper for upper, _ in pairs)
        self.counts: Sequence[float] = [c for _, c in pairs]
        self.count = count
        self.sum = sum

    @classmethod
    def of(cls, bounds: Sequence[float], counts: Sequence[float], count: float, sum: float | None) -> Histogram:
        """The histogram of `bounds` (held as given: a tuple shared by every scrape of a series) and `counts`."""
        h = cls.__new__(cls)
        h.bounds, h.counts, h.count, h.sum = bounds, counts, count, sum
        return h

    @property
    def buckets(self) -> list[tuple[float, float]]:
        return list(zip(self.bounds, self.counts))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (self.buckets, self.count, self.sum) == (other.buckets, other.count, other.sum)

    def __repr__(self) -> str:
        return f"Histogram(buckets={self.buckets!r}, count={self.count!r}, sum={self.sum!r})"


def collect(samples: Iterable[Sample], name: str, by: Sequence[str] | None = None) -> dict[LabelKey, Histogram]:
    """Histograms named `name` (reads `name_bucket`, `name_count`, `name_sum`), one per label set.

    With `by`, series are keyed by those labels only and series sharing a key are merged
    (e.g. `by=("model_name",)` sums vLLM engines); series whose bounds differ from the first
    of their key are dropped rather than mixed. `_count` falls back to the `+Inf` bucket.
    """
    bucket_name, count_name, sum_name = name + "_bucket", name + "_count", name + "_sum"
    raw: dict[LabelKey, dict[float, float]] = {}
    counts: dict[LabelKey, float] = {}
    sums: dict[LabelKey, float] = {}
    last_key: LabelKey | None = None
    series: dict[float, float] = {}
    for s in samples:
        n = s.name
        if n == bucket_name:
            labels = s.labels
            le = labels.get("le")
            if le is None:
                continue
            upper = bound_of(le)
            if upper != upper:  # NaN: not a bound
                continue
            key = _series_key(s)
            if key is not last_key:  # a series' buckets are adjacent: one lookup for a run of them
                found = raw.get(key)
                if found is None:
                    found = raw[key] = {}
                series, last_key = found, key
            before = series.get(upper)  # two texts of one bound (`1`, `1.0`) add up
            series[upper] = s.value if before is None else before + s.value
        elif n == count_name:
            counts[_key(s)] = s.value
        elif n == sum_name:
            sums[_key(s)] = s.value
    result: dict[LabelKey, Histogram] = {}
    for key, series in raw.items():
        buckets = sorted(series.items())
        count = counts.get(key)
        if count is None:
            count = series.get(_INF, buckets[-1][1])
        result[key] = Histogram(buckets, count, sums.get(key))
    if by is None:
        return result
    grouped: dict[LabelKey, list[Histogram]] = {}
    for key, hist in result.items():
        labels = dict(key)
        group = tuple((k, labels[k]) for k in by if k in labels)
        grouped.setdefault(group, []).append(hist)
    merged: dict[LabelKey, Histogram] = {}
    for group, hists in grouped.items():
        bounds = hists[0].bounds
        same = [h for h in hists if h.bounds == bounds]
        combined = merge(same)
        if combined is not None:
            merged[group] = combined
    return merged


@dataclass(frozen=True, slots=True)
class SeriesLayout:
    """Where one histogram series' numbers are among a page's sample values (what `collect` would read)."""

    key: LabelKey
    bounds: tuple[float, ...]
    """Sorted, as `Histogram.buckets`."""
    buckets: tuple[tuple[int, ...], ...]
    """For each bound, the positions of the values that add up to its count (one, unless two `le` texts name it)."""
    count_at: int | None
    """The `_count` value's position; None: the count is that of bucket `count_bucket` (`+Inf`, else the last)."""
    count_bucket: int
    sum_at: int | None


def layout(samples: Iterable[tuple[int, Sample]], name: str) -> dict[LabelKey, SeriesLayout]:
    """`collect(samples, name)`'s series, each as the positions of its numbers: `samples` are (position, sample)
    pairs, and a later page whose values sit at the same positions gives the histograms of `collect` on it."""
    bucket_name, count_name, sum_name = name + "_bucket", name + "_count", name + "_sum"
    raw: dict[LabelKey, dict[float, list[int]]] = {}
    counts: dict[LabelKey, int] = {}
    sums: dict[LabelKey, int] = {}
    for at, s in samples:
        if s.name == bucket_name:
            le = s.labels.get("le")
            upper = math.nan if le is None else bound_of(le)
            if upper == upper:
                raw.setdefault(_series_key(s), {}).setdefault(upper, []).append(at)
        elif s.name == count_name:
            counts[_key(s)] = at
        elif s.name == sum_name:
            sums[_key(s)] = at
    out: dict[LabelKey, SeriesLayout] = {}
    for key, series in raw.items():
        bounds = sorted(series)
        count_bucket = bounds.index(_INF) if _INF in series else len(bounds) - 1
        buckets = tuple(tuple(series[b]) for b in bounds)
        out[key] = SeriesLayout(key, tuple(bounds), buckets, counts.get(key), count_bucket, sums.get(key))
    return out


def _series_key(s: Sample) -> LabelKey:
    """The parser's series key when it had one (promtext.series_key; not imported: see above)."""
    key = s.series
    return key if key is not None else tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))


def _key(s: Sample) -> LabelKey:
    return s.key if s.key is not None else tuple(sorted(s.labels.items()))


_BOUNDS: dict[str, float] = {}
"""`le` label value -> its bound (NaN: not a number), read once: the same few dozen recur on every page."""


def bound_of(le: str) -> float:
    """The bound an `le` label value names (NaN: none)."""
    upper = _BOUNDS.get(le)
    if upper is not None:
        return upper
    try:
        upper = float(le)
    except ValueError:
        upper = math.nan
    if len(_BOUNDS) < 4096:
        _BOUNDS[le] = upper
    return upper


def _has_nan(h: Histogram) -> bool:
    return math.isnan(h.count) or any(math.isnan(c) for c in h.counts) or (h.sum is not None and math.isnan(h.sum))


def delta(prev: Histogram, cur: Histogram) -> Histogram | None:
    """Observations between two scrapes; None on a counter reset, changed bucket bounds or a NaN anywhere.

    One pass, comparisons only (`x != x` is the NaN test): this runs for every histogram series every gather."""
    bounds, before_counts, after_counts = cur.bounds, prev.counts, cur.counts
    before_count, after_count = prev.count, cur.count
    if (
        len(prev.bounds) != len(bounds)
        or before_count != before_count
        or after_count != after_count
        or after_count < before_count
    ):
        return None
    before_sum, after_sum = prev.sum, cur.sum
    if (before_sum is not None and before_sum != before_sum) or (after_sum is not None and after_sum != after_sum):
        return None
    counts: list[float] = []
    append = counts.append
    for upper, bound, before, after in zip(prev.bounds, bounds, before_counts, after_counts):
        if upper != bound or not after >= before:  # also False when either is NaN
            return None
        append(after - before)
    if before_sum is None or after_sum is None:
        total = None
    elif after_sum < before_sum:
        return None
    else:
        total = after_sum - before_sum
    return Histogram.of(bounds, counts, after_count - before_count, total)


def increase(prev: dict[LabelKey, Histogram], cur: dict[LabelKey, Histogram]) -> tuple[Histogram | None, bool]:
    """`sum(increase(x_bucket[...]))` between two scrapes: each series' own delta, then merged.

    A series that went down was reset and counts from 0 (its current buckets), as Prometheus'
    `increase` does, and so does a series new since the previous scrape; one whose bounds changed
    counts nothing. Returns (None, reset) when no series gave a delta, and whether any series was
    reset or re-bucketed.
    """
    deltas: list[Histogram] = []
    reset = False
    for key, h in cur.items():
        before = prev.get(key)
        if before is None:
            deltas.append(h)
            continue
        d = delta(before, h)
        if d is None:
            reset = True
            if before.bounds != h.bounds or _has_nan(h):
                continue
            d = h
        deltas.append(d)
    return merge(deltas), reset


def merge(hists: Iterable[Histogram]) -> Histogram | None:
    """Sum of histograms with identical bounds (engines, ranks); None if empty or bounds differ."""
    hists = list(hists)
    if not hists:
        return None
    if len(hists) == 1:  # the usual case (one engine): nothing to add up
        return hists[0]
    bounds = hists[0].bounds
    if any(h.bounds != bounds for h in hists[1:]):
        return None
    counts = [0.0] * len(bounds)
    total: float | None = 0.0
    for h in hists:
        for i, c in enumerate(h.counts):
            counts[i] += c
        total = None if total is None or h.sum is None else total + h.sum
    return Histogram.of(bounds, counts, sum(h.count for h in hists), total)


def mean(hist: Histogram) -> float | None:
    """sum / count; None without observations or without a `_sum`."""
    if hist.sum is None or not hist.count or math.isnan(hist.count):
        return None
    return hist.sum / hist.count


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < _MIN_NORMAL:
        return diff < epsilon * _MIN_NORMAL
    return diff / min(abs_sum, _MAX_FLOAT) < epsilon


def quantile(q: float, hist: Histogram) -> float | None:
    """Prometheus `histogram_quantile(q, ...)` on one (delta) histogram.

    Linear interpolation inside the bucket holding rank q*count; the first bucket starts at 0
    unless its upper bound is <= 0 (then that bound is returned); a rank in the `+Inf` bucket
    returns the highest finite bound. None when there are no observations (never 0) or no
    buckets; NaN where Prometheus gives NaN (no `+Inf` bucket, fewer than two buckets, q NaN);
    -Inf / +Inf for q < 0 / q > 1.
    """
    return quantiles((q,), hist)[0]


def quantiles(qs: Sequence[float], hist: Histogram) -> list[float | None]:
    """`quantile(q, hist)` for each of `qs`, the buckets sorted and repaired once for all of them."""
    prepared = _prepared(hist)
    return [_rank_value(q, prepared) for q in qs]


def _prepared(hist: Histogram) -> tuple[list[float], list[float]] | float | None:
    """(bounds, repaired cumulative counts) as Prometheus reads them; else what every q in [0, 1] gives."""
    if not hist.bounds:
        return None
    bounds, counts = _coalesced(hist.bounds, hist.counts)
    if bounds[-1] != _INF:
        return math.nan
    # Repair non-monotonic counts the way Prometheus does: absorb float noise, carry the last accepted count
    # over decreases.
    prev = counts[0]
    for i in range(1, len(counts)):
        cur = counts[i]
        if cur == prev:
            continue
        if cur > prev >= _MIN_NORMAL:  # the usual rise: _almost_equal's test for two positive normal counts
            total = prev + cur
            if (cur - prev) / (total if total <= _MAX_FLOAT else _MAX_FLOAT) >= _SMALL_DELTA:
                prev = cur
            else:
                counts[i] = prev
            continue
        if _almost_equal(prev, cur, _SMALL_DELTA) or cur < prev:
            counts[i] = prev
            continue
        prev = cur
    if len(bounds) < 2:
        return math.nan
    observations = counts[-1]
    if observations == 0 or math.isnan(observations):
        return None
    return bounds, counts


def _coalesced(uppers: Sequence[float], cs: Sequence[float]) -> tuple[list[float], list[float]]:
    """Bounds sorted and counts with equal bounds (e.g. le="1" and le="1.0") added up. Buckets are usually in order
    with distinct bounds already: one pass; any other order (or a bound twice) is sorted first."""
    bounds: list[float] = []
    counts: list[float] = []
    for upper, c in zip(uppers, cs):
        if bounds and not upper > bounds[-1]:
            break
        bounds.append(upper)
        counts.append(c)
    else:
        return bounds, counts
    bounds, counts = [], []
    for upper, c in sorted(zip(uppers, cs)):
        if bounds and bounds[-1] == upper:
            counts[-1] += c
        else:
            bounds.append(upper)
            counts.append(c)
    return bounds, counts


def _rank_value(q: float, prepared: tuple[list[float], list[float]] | float | None) -> float | None:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -_INF
    if q > 1:
        return _INF
    if not isinstance(prepared, tuple):
        return prepared
    bounds, counts = prepared
    rank = q * counts[-1]
    # First bucket (excluding +Inf) whose cumulative count reaches the rank.
    b = bisect_left(counts, rank, 0, len(counts) - 1)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0
    end = bounds[b]
    in_bucket = counts[b]
    if b > 0:
        start = bounds[b - 1]
        in_bucket -= counts[b - 1]
        rank -= counts[b - 1]
    if in_bucket == 0:  # only q == 0 with an empty first bucket: Go computes 0/0 = NaN
        return math.nan
    return start + (end - start) * (rank / in_bucket)
