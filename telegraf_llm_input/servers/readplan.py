"""A target's read plan: its last page's shape and the table's reading of it, compiled to positions.

Why: a server's page keeps its series and their order from one scrape to the next; only the values change. The
reading of such a page (`read_page`: group samples by name and model, sum and average, build histograms, pick
finish reasons, errors and info labels) then depends only on where each value sits. A `Plan` holds that
reading compiled from a page the parser read: which positions add up to which field of which model, which make
each histogram series. A later page of the same shape (`promshape.Shape`) is read straight into the same
`ModelReading`s: no `Sample`, no label dict, no grouping. What depends on the values is done on them as
`read_page` does it: NaN samples are left out of sums (a model with nothing else is then absent), the info
gauge's newest label set is the one with the highest value.

`read_page` stays the reference: a page of another shape is read by it, and a plan compiled from that page
(tests/servers/test_readplan.py holds the two to the same readings and line protocol).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol
from weakref import WeakValueDictionary

from telegraf_llm_input import histogram as hist
from telegraf_llm_input.http import Response
from telegraf_llm_input.promshape import Shape, compile_shape
from telegraf_llm_input.promtext import _BLOCK_CHARS, Heads, Page, Sample, label_key
from telegraf_llm_input.servers.base import ModelReading
from telegraf_llm_input.servers.promtable import (
    PromTable,
    check_page,
    finish_reason_of,
    first_of,
    label_fields,
    model_of,
    new_reading,
    parse_page,
    read_page,
)

__all__ = ["Plan", "PageReader", "Planned", "Series", "compile_plan", "first_of_each"]

Values = list[float]
Getter = Callable[[Values], Sequence[float]]


def picker(positions: Sequence[int]) -> Getter:
    """The values at `positions`, always as a sequence (itemgetter gives a bare item for one); one slice when they
    are a run (a histogram's buckets usually are)."""
    first = positions[0]
    if list(positions) == list(range(first, first + len(positions))):
        return itemgetter(slice(first, first + len(positions)))
    return itemgetter(*positions)


def _sums(buckets: tuple[tuple[int, ...], ...]) -> Getter:
    """Bucket counts where some bound has more than one value (`le="1"` and `le="1.0"`): added as `collect` does."""

    def get(values: Values) -> list[float]:
        out = []
        for positions in buckets:
            total = values[positions[0]]
            for at in positions[1:]:
                total += values[at]
            out.append(total)
        return out

    return get


@dataclass(frozen=True, slots=True)
class _Sum:
    """One field of one model: the sum (or mean) of its series' values."""

    field: str
    counter: bool
    mean: bool
    model: str | None
    keys: tuple[hist.LabelKey, ...]
    get: Getter


@dataclass(frozen=True, slots=True)
class Series:
    """One histogram series: where its numbers are (`hist.layout`), read as `hist.collect` reads them."""

    key: hist.LabelKey
    bounds: tuple[float, ...]
    get: Getter
    count_at: int | None
    count_bucket: int
    sum_at: int | None

    @classmethod
    def of(cls, where: hist.SeriesLayout) -> Series:
        get: Getter = picker([b[0] for b in where.buckets])
        if any(len(b) > 1 for b in where.buckets):
            get = _sums(where.buckets)
        return cls(where.key, where.bounds, get, where.count_at, where.count_bucket, where.sum_at)

    def read(self, values: Values) -> hist.Histogram:
        counts = self.get(values)
        return hist.Histogram(
            list(zip(self.bounds, counts)),
            counts[self.count_bucket] if self.count_at is None else values[self.count_at],
            None if self.sum_at is None else values[self.sum_at],
        )


@dataclass(frozen=True, slots=True)
class _Hist:
    """One histogram of one model: its series (merged as `read_page` merges them)."""

    prefix: str
    model: str | None
    series: tuple[Series, ...]


@dataclass(frozen=True, slots=True)
class _Info:
    """An info gauge's series: (position, the fields its labels give)."""

    candidates: tuple[tuple[int, dict[str, int]], ...]


class Plan:
    """The reading of pages of one shape, for one default model (the model of series without a model label)."""

    __slots__ = ("shape", "default_model", "_table", "_sums", "_hists", "_infos", "__weakref__")

    def __init__(
        self,
        shape: Shape,
        table: PromTable,
        default_model: str | None,
        sums: list[_Sum],
        hists: list[_Hist],
        infos: list[_Info],
    ):
        self.shape = shape
        self.default_model = default_model
        self._table = table
        self._sums = tuple(sums)
        self._hists = tuple(hists)
        self._infos = tuple(infos)

    def read(self, values: Values) -> list[ModelReading]:
        """`read_page` of a page of this shape whose sample values are `values` (Shape.values)."""
        models: dict[str | None, ModelReading] = {}
        table = self._table
        for op in self._sums:
            vals = op.get(values)
            keys = op.keys
            total = sum(vals)
            if total != total:  # a NaN among them (or +Inf and -Inf): NaN samples are left out
                kept = [(k, v) for k, v in zip(keys, vals) if v == v]
                if not kept:
                    continue
                keys = tuple(k for k, _ in kept)
                vals = [v for _, v in kept]
                total = sum(vals)
            r = models.get(op.model)
            if r is None:
                r = models[op.model] = new_reading(table, op.model)
            if op.counter:
                r.counters[op.field] = total
                r.counter_series[op.field] = dict(zip(keys, vals))
            else:
                r.gauges[op.field] = total / len(vals) if op.mean else total
        for h in self._hists:
            series = {s.key: s.read(values) for s in h.series}
            merged = hist.merge(series.values())
            if merged is not None:
                r = models.get(h.model)
                if r is None:
                    r = models[h.model] = new_reading(table, h.model)
                r.histograms[h.prefix] = merged
                r.histogram_series[h.prefix] = series
        for info in self._infos:
            best: dict[str, int] | None = None
            highest = 0.0
            for at, fields in info.candidates:
                value = values[at]
                if value == value and (best is None or value > highest):  # the first highest, as max() gives
                    best, highest = fields, value
            if best:
                if not models:
                    models[self.default_model] = new_reading(table, self.default_model)
                for r in models.values():
                    r.gauges.update(best)
        return [models[m] for m in sorted(models, key=_model_order)]


def _model_order(model: str | None) -> str:
    return model or ""


def compile_plan(
    table: PromTable, text: str, page: Page, samples: Sequence[Sample], default_model: str | None
) -> Plan | None:
    """The plan of `text`, which the parser read into `page` (`samples`: its samples before de-duplication); None
    when its shape cannot be checked (promshape)."""
    shape = compile_shape(text, page, samples, table.read_names)
    if shape is None:
        return None
    # what a plan reads follows from the page's lines but for their values, which its shape holds: targets
    # serving the same page (replicas of one server) hold one shape and so one plan
    kind = (shape, id(table), default_model)
    plan = _PLANS.get(kind)
    if plan is not None:
        return plan
    by_name: dict[str, list[tuple[int, Sample]]] = {}
    for at, s in first_of_each(samples):
        by_name.setdefault(s.name, []).append((at, s))
    label = table.model_label
    sums: list[_Sum] = []

    def add(field: str, entries: Sequence[tuple[int, Sample]], counter: bool, mean: bool = False) -> None:
        per_model: dict[str | None, list[tuple[int, Sample]]] = {}
        for entry in entries:
            per_model.setdefault(model_of(entry[1].labels, label, default_model), []).append(entry)
        for model, own in per_model.items():
            keys = tuple(label_key(s) for _, s in own)
            sums.append(_Sum(field, counter, mean, model, keys, picker([at for at, _ in own])))

    for ours, names in table.gauges.items():
        entries = first_of(by_name, names)
        if entries:
            add(ours, entries, False, ours in table.averaged)
    for ours, names in table.counters.items():
        entries = first_of(by_name, names)
        if entries:
            add(ours, entries, True)
    if table.finish_reason:
        name, reason_label = table.finish_reason
        groups: dict[str, list[tuple[int, Sample]]] = {}
        for entry in by_name.get(name, ()):
            reason = finish_reason_of(entry[1].labels, reason_label)
            if reason:
                groups.setdefault(reason, []).append(entry)
        for reason, entries in groups.items():
            add(f"requests_finished_{reason}_total", entries, True)
    if table.errors_where:
        name, err_label, wanted = table.errors_where
        add("request_errors_total", [e for e in by_name.get(name, ()) if e[1].labels.get(err_label) in wanted], True)
    hists: list[_Hist] = []
    for prefix, names in table.all_histograms.items():
        for n in names:
            if n + "_bucket" not in by_name:
                continue
            own = [*by_name[n + "_bucket"], *by_name.get(n + "_count", ()), *by_name.get(n + "_sum", ())]
            per_model: dict[str | None, list[Series]] = {}
            for key, where in hist.layout(own, n).items():
                series = per_model.setdefault(model_of(dict(key), label, default_model), [])
                if not series or where.bounds == series[0].bounds:  # other bounds than the first: dropped
                    series.append(Series.of(where))
            hists.extend(_Hist(prefix, model, tuple(series)) for model, series in per_model.items())
            break
    infos = [
        _Info(tuple((at, label_fields(info, s.labels)) for at, s in by_name.get(info.metric, ())))
        for info in table.info
    ]
    return _PLANS.setdefault(kind, Plan(shape, table, default_model, sums, hists, [i for i in infos if i.candidates]))


def first_of_each(samples: Sequence[Sample]) -> list[tuple[int, Sample]]:
    """The first of each series (name and labels), as `dedupe` keeps them, in page order, each with its position
    among the page's values."""
    seen: set[tuple[str, hist.LabelKey]] = set()
    out = []
    for at, s in enumerate(samples):
        series_id = (s.name, label_key(s))
        if series_id not in seen:
            seen.add(series_id)
            out.append((at, s))
    return out


_PLANS: WeakValueDictionary[tuple[Shape, int, str | None], Plan] = WeakValueDictionary()
"""The plans targets hold, by shape, table (its id: the plan holds the table) and default model."""


@dataclass(slots=True)
class Scanned:
    """A page as far as it can be read before the default model is known: its values by the plan, or parsed."""

    answer: str | Response
    where: str
    values: Values | None = None
    plan: Planned | None = None
    text: str = ""
    """The page as text (parsed pages only)."""
    page: Page | None = None
    samples: Sequence[Sample] = ()
    """The parsed page's samples before de-duplication (what a plan is compiled from)."""


class Planned(Protocol):
    """What a reader reads a page of a known shape with (`Plan`; generic_prometheus's `AnyPlan`)."""

    @property
    def shape(self) -> Shape: ...

    @property
    def default_model(self) -> str | None: ...

    def read(self, values: Values) -> list[ModelReading]: ...


class PageReader:
    """One target's way from a page's text to its readings: its plan when the page has the plan's shape, else
    the parser (`read_page`) and a new plan compiled from that page. A reader of a page without a table (the
    `prometheus` type: `table` None, every name parsed) overrides `reference` and `compile`.

    A page that changes shape every scrape (new series each time) would pay for a plan it never uses: after a
    plan goes unused, the next is compiled only after 1, 2, 4 ... up to MAX_WAIT pages read the long way. The
    parser's line heads (promtext.Heads) are dropped while a plan reads: it holds less (a vLLM page: ~80 KiB
    against ~120 KiB of heads), and only a page of another shape needs them."""

    MAX_WAIT = 32

    def __init__(self, table: PromTable | None):
        self.table = table
        self.heads: Heads = {}
        self.plan: Planned | None = None
        self.planned = 0
        """Pages read by a plan."""
        self.compiled = 0
        """Plans compiled."""
        self._used = False
        self._wait = 0
        self._skip = 0

    def scan(self, answer: str | Response, where: str, deadline: float | None = None) -> Scanned:
        """The page's values when it has the plan's shape, else the page parsed and checked (`check_page`).

        `answer`: the page, or the answer holding it (its body is then read by the plan as it came, with no text
        made of it)."""
        plan = self.plan
        body = answer.body if isinstance(answer, Response) else answer
        if plan is not None and (deadline is None or len(body) <= _BLOCK_CHARS or time.monotonic() <= deadline):
            values = plan.shape.values(body)
            if values is not None:
                return Scanned(answer, where, values, plan)
            self._drop()
        text = answer.text() if isinstance(answer, Response) else answer
        page = parse_page(text, self.table, where, deadline, self.heads)
        samples = page.samples
        return Scanned(answer, where, text=text, page=check_page(page, self.table, where), samples=samples)

    def readings(self, scanned: Scanned, default_model: str | None = None) -> list[ModelReading]:
        """`read_page` of the scanned page (by the plan when it has the plan's shape; else a new plan is compiled)."""
        plan = scanned.plan
        if plan is not None and scanned.values is not None:
            if plan.default_model == default_model:
                self.planned += 1
                self._used = True
                return plan.read(scanned.values)
            self._used = True  # another model (TGI's /info), not a page changing shape: no backing off
            self._drop()
            scanned = self.scan(scanned.answer, scanned.where)
        assert scanned.page is not None
        models = self.reference(scanned.page, default_model)
        if self._skip:
            self._skip -= 1
        else:
            self.plan = self.compile(scanned.text, scanned.page, scanned.samples, default_model)
            self._used = False
            if self.plan is None:
                self._back_off()
            else:
                self.compiled += 1
                self.heads.clear()  # the plan reads what they would (a page of another shape fills them again)
        return models

    def reference(self, page: Page, default_model: str | None) -> list[ModelReading]:
        """What the page says, read the long way (what a plan must give)."""
        assert self.table is not None  # a reader without a table overrides this
        return read_page(self.table, page, default_model)

    def compile(self, text: str, page: Page, samples: Sequence[Sample], default_model: str | None) -> Planned | None:
        assert self.table is not None
        return compile_plan(self.table, text, page, samples, default_model)

    def _drop(self) -> None:
        if not self._used:
            self._back_off()
        else:
            self._wait = 0
        self.plan = None

    def _back_off(self) -> None:
        self._wait = min(self.MAX_WAIT, 2 * self._wait or 1)
        self._skip = self._wait
