"""Any Prometheus page: include/exclude name globs; gauges as they are, counters also as
`<name>_per_s`, histograms as interval percentiles `<name>_p50`... in the page's own unit.
One metric per label set (labels become tags); measurement from the target's `measurement`.
A page of the last one's shape is read by position (`AnyPlan`, as servers/readplan.py does for the tables)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from telegraf_llm_input import histogram as hist
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.promshape import Shape, compile_shape
from telegraf_llm_input.promtext import Page, Sample, family_name
from telegraf_llm_input.servers.base import Fetcher, ModelReading, Reading
from telegraf_llm_input.servers.readplan import PageReader, Series, Values, first_of_each

TYPE = "prometheus"
NAME = "prometheus"
_FIELD_OK = re.compile(r"[^a-zA-Z0-9_]")
_RESERVED_TAGS = {"target", "server_type"}


def wanted(name: str, include: list[str], exclude: list[str]) -> bool:
    if include and not any(fnmatchcase(name, g) for g in include):
        return False
    return not any(fnmatchcase(name, g) for g in exclude)


def _kind(s: Sample, family: str, types: dict[str, str], include: list[str], exclude: list[str]) -> str | None:
    """How `read_any` takes a sample: `histogram` (its family read whole), `counter`, `gauge`, or None (left out:
    not wanted, `_created`, a summary's quantile)."""
    kind = types.get(family, "untyped")
    if not wanted(family, include, exclude) or s.name.endswith("_created"):
        return None
    if kind == "histogram":
        return kind
    if kind == "summary":
        return None if "quantile" in s.labels else "counter" if s.name != family else "gauge"
    return "counter" if kind == "counter" else "gauge"


def read_any(page: Page, include: list[str], exclude: list[str], measurement: str) -> list[ModelReading]:
    """Pure: the page as readings keyed by label set."""
    readings: dict[hist.LabelKey, ModelReading] = {}

    def reading(labels: dict[str, str]) -> ModelReading:
        key = tuple(sorted(labels.items()))
        if key not in readings:
            tags = {k: v for k, v in labels.items() if k not in _RESERVED_TAGS and v}
            readings[key] = ModelReading(
                None, rated=None, hist_scale=1.0, hist_suffix="", measurement=measurement, tags=tags
            )
        return readings[key]

    histograms: set[str] = set()
    for s in page.samples:
        family = family_name(s.name, page.types)
        kind = _kind(s, family, page.types, include, exclude)
        if kind == "histogram":
            histograms.add(family)
            continue
        if kind is None or s.value != s.value:
            continue
        target = reading(s.labels)
        if kind == "counter":
            target.counters[_FIELD_OK.sub("_", s.name)] = s.value
        else:
            target.gauges[_FIELD_OK.sub("_", s.name)] = s.value
    for family in sorted(histograms):
        for key, h in hist.collect(page.samples, family).items():
            reading(dict(key)).histograms[_FIELD_OK.sub("_", family)] = h
    return list(readings.values())


@dataclass(frozen=True, slots=True)
class _Value:
    """One sample `read_any` keeps: its position among the values, its label set's index, its field."""

    at: int
    labels: int
    field: str
    counter: bool


class AnyPlan:
    """`read_any` of pages of one shape (readplan.py says why): each kept sample's position, label set and field,
    each histogram series' positions. What depends on the values is done as `read_any` does it: a NaN sample is
    left out (a label set with nothing else is then absent, or comes later)."""

    default_model = None
    __slots__ = ("shape", "_tags", "_values", "_hists", "_measurement")

    def __init__(
        self,
        shape: Shape,
        tags: list[dict[str, str]],
        values: list[_Value],
        hists: list[tuple[str, int, Series]],
        measurement: str,
    ):
        self.shape = shape
        self._tags = tuple(tags)
        self._values = tuple(values)
        self._hists = tuple(hists)
        self._measurement = measurement

    def read(self, values: Values) -> list[ModelReading]:
        readings: dict[int, ModelReading] = {}

        def reading(labels: int) -> ModelReading:
            r = readings.get(labels)
            if r is None:
                r = readings[labels] = ModelReading(
                    None, rated=None, hist_scale=1.0, hist_suffix="", measurement=self._measurement,
                    tags=dict(self._tags[labels]),
                )  # fmt: skip
            return r

        for v in self._values:
            value = values[v.at]
            if value == value:
                r = reading(v.labels)
                (r.counters if v.counter else r.gauges)[v.field] = value
        for field, labels, series in self._hists:
            reading(labels).histograms[field] = series.read(values)
        return list(readings.values())


def compile_any(
    text: str, page: Page, samples: Sequence[Sample], include: list[str], exclude: list[str], measurement: str
) -> AnyPlan | None:
    """The plan of `text`, which the parser read (every name) into `page` (`samples`: before de-duplication); None
    when its shape cannot be checked (promshape)."""
    shape = compile_shape(text, page, samples, frozenset(s.name for s in samples))
    if shape is None:
        return None
    index: dict[hist.LabelKey, int] = {}
    tags: list[dict[str, str]] = []

    def labels_of(labels: dict[str, str]) -> int:
        key = tuple(sorted(labels.items()))
        if key not in index:
            index[key] = len(tags)
            tags.append({k: v for k, v in labels.items() if k not in _RESERVED_TAGS and v})
        return index[key]

    first = first_of_each(samples)
    kept: list[_Value] = []
    histograms: set[str] = set()
    for at, s in first:
        family = family_name(s.name, page.types)
        kind = _kind(s, family, page.types, include, exclude)
        if kind == "histogram":
            histograms.add(family)
        elif kind is not None:
            kept.append(_Value(at, labels_of(s.labels), _FIELD_OK.sub("_", s.name), kind == "counter"))
    hists = []
    for family in sorted(histograms):
        names = (family + "_bucket", family + "_count", family + "_sum")
        layout = hist.layout([(at, s) for at, s in first if s.name in names], family)
        hists += [(_FIELD_OK.sub("_", family), labels_of(dict(key)), Series.of(w)) for key, w in layout.items()]
    return AnyPlan(shape, tags, kept, hists, measurement)


class AnyReader(PageReader):
    """A `prometheus` target's reader: every name parsed, read by `read_any`, later pages by an `AnyPlan`."""

    def __init__(self, target: TargetConfig):
        super().__init__(None)
        self.target = target

    def reference(self, page: Page, default_model: str | None) -> list[ModelReading]:
        t = self.target
        return read_any(page, t.include, t.exclude, t.measurement)

    def compile(self, text: str, page: Page, samples: Sequence[Sample], default_model: str | None) -> AnyPlan | None:
        t = self.target
        return compile_any(text, page, samples, t.include, t.exclude, t.measurement)


class PrometheusAdapter:
    server_type = TYPE

    def __init__(self, target: TargetConfig):
        self.target = target
        self.reader = AnyReader(target)

    async def read(self, fetch: Fetcher) -> Reading:
        path = self.target.metrics_path or "/metrics"
        answer = await fetch.get(path)
        size = len(answer.body)
        scanned = await fetch.sized(size, self.reader.scan, answer, f"{self.target.display_name}{path}", fetch.deadline)
        return Reading(await fetch.sized(size, self.reader.readings, scanned), server_type=TYPE)


def make(target: TargetConfig) -> PrometheusAdapter:
    return PrometheusAdapter(target)
