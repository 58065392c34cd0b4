"""Reading a Prometheus page through a declarative table: our field -> the server's metric names.

A server module is then mostly a `PromTable`. Series are grouped by the model label and summed
over every other label (vLLM engines, SGLang ranks); ratio gauges (KV-cache usage) are averaged.
Counters and histograms also keep each series, so interval increases are taken per series before
summing (one engine's restart is not hidden by another's growth). A series twice on a page (same
name and labels) counts once: the first, as Prometheus keeps it. Names ending in `_created` are
never read because tables only list the names they want.
"""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import TypeVar

from telegraf_llm_input import histogram as hist
from telegraf_llm_input.http import FetchError
from telegraf_llm_input.log import get_logger
from telegraf_llm_input.promtext import Heads, Page, ParseTimeout, Sample, label_key, parse
from telegraf_llm_input.servers.base import (
    COUNT_QUANTILES,
    QUANTILES,
    STANDARD_RATES,
    ModelReading,
    Speed,
    rate_name,
)

log = get_logger("server")
T = TypeVar("T")


@dataclass(frozen=True)
class InfoLabels:
    """Fields from the labels of an info gauge's newest series: the one with the highest value (vLLM sets
    `lora_requests_info` to the time of the update, and label sets from before stay on the page)."""

    metric: str
    lists: dict[str, str] = field(default_factory=dict)
    """Our field -> label holding a comma-separated list: its length."""
    numbers: dict[str, str] = field(default_factory=dict)
    """Our field -> label holding an integer."""


@dataclass(frozen=True)
class PromTable:
    server_type: str
    prefix: str = ""
    """Every metric name of this server type starts with it (`vllm:`): a page with such names is the
    server answering, even when none of the names below are on it (a partial page, an older build)."""
    model_label: str | None = "model_name"
    gauges: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Our field -> candidate metric names; the first present on the page wins (new before old)."""
    averaged: frozenset[str] = frozenset()
    """Gauges averaged over series (ratios), not summed."""
    counters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    histograms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Our prefix (`ttft`) -> candidate histogram names (values in seconds)."""
    token_histograms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Our prefix (`request_prompt_tokens`) -> candidate histogram names of per-request counts (tokens):
    `<prefix>_p50`, `_p95`, `_mean` in the histogram's own unit."""
    info: tuple[InfoLabels, ...] = ()
    """Info gauges whose newest label set gives fields (vLLM's LoRA adapters)."""
    finish_reason: tuple[str, str] | None = None
    """(counter, label): adds `requests_finished_<reason>_total` per label value."""
    errors_where: tuple[str, str, tuple[str, ...]] | None = None
    """(counter, label, values): `request_errors_total` = that counter where label is one of values
    (absent when the page has no such series)."""
    speeds: dict[str, Speed] = field(default_factory=dict)
    """Our field -> (counter, counter[, plus]): Δfirst / Δsecond (+ plus) over the interval (ModelReading.speeds)."""
    version: tuple[str, str] | None = None
    """(path, key) of a JSON answer holding the server's version (`/version`, `version`): the `server_version`
    tag, asked rarely (promadapter.VERSION_EVERY_S, first contact, after an outage)."""
    path: str = "/metrics"

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """The sample names that say a page is this server's (gauges, counters, histogram buckets, info)."""
        out = {n for table in (self.gauges, self.counters) for names in table.values() for n in names}
        out |= {
            n + "_bucket"
            for table in (self.histograms, self.token_histograms)
            for names in table.values()
            for n in names
        }
        out |= {info.metric for info in self.info}
        return frozenset(out)

    @functools.cached_property
    def all_histograms(self) -> dict[str, tuple[str, ...]]:
        """Time and token histograms: our prefix -> candidate names (a token prefix wins a clash)."""
        return {**self.histograms, **self.token_histograms}

    @functools.cached_property
    def read_names(self) -> frozenset[str]:
        """Every sample name `read_page` looks at: what the parser keeps of a page for this table."""
        out = {n for table in (self.gauges, self.counters) for names in table.values() for n in names}
        out |= {
            n + suffix
            for table in (self.histograms, self.token_histograms)
            for names in table.values()
            for n in names
            for suffix in ("_bucket", "_count", "_sum")
        }
        out |= {info.metric for info in self.info}
        out |= {self.finish_reason[0]} if self.finish_reason else set()
        out |= {self.errors_where[0]} if self.errors_where else set()
        return frozenset(out)

    def fields(self) -> set[str]:
        """The llm_server fields this table can give (the schema's `servers` notes are generated from it)."""
        out = set(self.gauges) | set(self.counters) | set(self.speeds)
        if self.finish_reason:
            out.add("requests_finished_*_total")
        if self.errors_where:
            out.add("request_errors_total")
        out |= {rate_name(c) for c in STANDARD_RATES if c in out}
        if {"request_errors_total", "requests_total"} <= out:
            out.add("error_ratio")
        for prefix in self.histograms:
            out |= {f"{prefix}_{label}_ms" for _, label in QUANTILES} | {f"{prefix}_mean_ms"}
        for prefix in self.token_histograms:
            out |= {f"{prefix}_{label}" for _, label in COUNT_QUANTILES} | {f"{prefix}_mean"}
        for info in self.info:
            out |= set(info.lists) | set(info.numbers)
        return out

    def missing(self, page: Page) -> list[str]:
        """Our fields none of whose names are on the page, and that no other way gives: a gauge that is also a
        ratio of two counters on the page (vLLM V1's prefix-cache hit ratio) is not missing."""
        present = {s.name for s in page.samples}
        tables = (
            self.gauges,
            self.counters,
            {k: tuple(n + "_bucket" for n in v) for k, v in {**self.histograms, **self.token_histograms}.items()},
        )
        absent = {ours for table in tables for ours, names in table.items() if not any(n in present for n in names)}
        derived = {
            ours
            for ours, (num, den, *_) in self.speeds.items()
            if num in self.counters and den in self.counters and not {num, den} & absent
        }
        return sorted(absent - derived)


def _by_name(page: Page) -> dict[str, list[Sample]]:
    """Samples by name, in page order; a family's lines are adjacent on a page, so one lookup a run of them."""
    out: dict[str, list[Sample]] = {}
    for name, run in groupby(page.samples, _NAME):
        same = out.get(name)
        if same is None:
            out[name] = list(run)
        else:
            same.extend(run)
    return out


def first_of(by_name: dict[str, list[T]], names: tuple[str, ...]) -> list[T] | None:
    """The entries of the first of `names` on the page (a table's candidates: new names before old)."""
    for n in names:
        if n in by_name:
            return by_name[n]
    return None


def model_of(labels: dict[str, str], label: str | None, default_model: str | None) -> str | None:
    """The model a series belongs to: its model label, else the default (the target's one model)."""
    return (labels.get(label) if label else None) or default_model


def finish_reason_of(labels: dict[str, str], label: str) -> str | None:
    """The finish reason a series counts (lower case), or None when its label is no usable field name part."""
    reason = labels.get(label)
    return reason.lower() if reason and reason.replace("_", "").isalnum() else None


def read_page(table: PromTable, page: Page, default_model: str | None = None) -> list[ModelReading]:
    """One ModelReading per model on the page (pure). The reference reading: `readplan` compiles the same
    reading for later pages of the same shape (tests/servers/test_readplan.py holds the two to each other)."""
    by_name = _by_name(page)
    models: dict[str | None, ModelReading] = {}
    label = table.model_label

    def reading(model: str | None) -> ModelReading:
        if model not in models:
            models[model] = new_reading(table, model)
        return models[model]

    def accumulate(target: str, samples: list[Sample], kind: str, mean: bool = False) -> None:
        sums: dict[str | None, dict[hist.LabelKey, float]] = {}
        for s in samples:
            if s.value != s.value:  # NaN
                continue
            sums.setdefault(model_of(s.labels, label, default_model), {})[label_key(s)] = s.value
        for model, series in sums.items():
            values = series.values()
            value = sum(values) / len(values) if mean else sum(values)
            r = reading(model)
            getattr(r, kind)[target] = value
            if kind == "counters":
                r.counter_series[target] = series

    for ours, names in table.gauges.items():
        samples = first_of(by_name, names)
        if samples:
            accumulate(ours, samples, "gauges", ours in table.averaged)
    for ours, names in table.counters.items():
        samples = first_of(by_name, names)
        if samples:
            accumulate(ours, samples, "counters")
    if table.finish_reason:
        name, reason_label = table.finish_reason
        groups: dict[str, list[Sample]] = {}
        for s in by_name.get(name, ()):
            reason = finish_reason_of(s.labels, reason_label)
            if reason:
                groups.setdefault(reason, []).append(s)
        for reason, samples in groups.items():
            accumulate(f"requests_finished_{reason}_total", samples, "counters")
    if table.errors_where:
        name, err_label, values = table.errors_where
        samples = by_name.get(name)
        matching = [s for s in samples or () if s.labels.get(err_label) in values]
        # Only servers that export the error series (newer vLLM) get the field; older ones
        # don't count errors at all, and a 0 would claim they had none.
        accumulate("request_errors_total", matching, "counters")
    for prefix, names in table.all_histograms.items():
        for n in names:
            if n + "_bucket" not in by_name:
                continue
            own = [*by_name[n + "_bucket"], *by_name.get(n + "_count", ()), *by_name.get(n + "_sum", ())]
            per_model: dict[str | None, dict[hist.LabelKey, hist.Histogram]] = {}
            for key, h in hist.collect(own, n).items():
                series = per_model.setdefault(model_of(dict(key), label, default_model), {})
                first = next(iter(series.values()), h)
                if h.bounds == first.bounds:  # series with other bounds than the first: dropped, not mixed
                    series[key] = h
            for model, series in per_model.items():
                merged = hist.merge(series.values())
                if merged is not None:
                    r = reading(model)
                    r.histograms[prefix] = merged
                    r.histogram_series[prefix] = series
            break
    for info in table.info:
        fields = _info_fields(info, by_name.get(info.metric, ()))
        if fields:
            # the info gauge has no model label (vLLM): it is the whole server's, so every model's
            for r in list(models.values()) or [reading(default_model)]:
                r.gauges.update(fields)
    return [models[m] for m in sorted(models, key=_model_order)]


def new_reading(table: PromTable, model: str | None) -> ModelReading:
    return ModelReading(model, speeds=dict(table.speeds), count_histograms=frozenset(table.token_histograms))


def _model_order(model: str | None) -> str:
    return model or ""


def _info_fields(info: InfoLabels, samples: Sequence[Sample]) -> dict[str, int]:
    series = [s for s in samples if s.value == s.value]
    if not series:
        return {}
    return label_fields(info, max(series, key=lambda s: s.value).labels)


def label_fields(info: InfoLabels, labels: dict[str, str]) -> dict[str, int]:
    """The fields an info gauge's label set gives."""
    out = {
        ours: len([x for x in labels[label].split(",") if x.strip()])
        for ours, label in info.lists.items()
        if label in labels
    }
    for ours, label in info.numbers.items():
        try:
            out[ours] = int(labels[label])
        except (KeyError, ValueError):
            pass
    return out


def dedupe(page: Page) -> int:
    """Keep the first of each series (name and labels) on the page, as Prometheus does; how many were dropped."""
    samples = page.samples
    if len({(s.name, label_key(s)) for s in samples}) == len(samples):
        return 0  # the usual page: nothing to drop, no second list built
    seen: set[tuple[str, hist.LabelKey]] = set()
    kept: list[Sample] = []
    for s in samples:
        key = (s.name, label_key(s))
        if key not in seen:
            seen.add(key)
            kept.append(s)
    page.samples = kept
    return len(samples) - len(kept)


_WARNED: set[tuple[str, str]] = set()
_NAME = operator.attrgetter("name")
_CHECKED: dict[str, int] = {}
"""Target -> the sample count of the last page checked for missing metrics (a page like it has the same names)."""


def once(where: str, what: str, level: int, message: str, *args: object) -> None:
    """Log `message` once per target and kind of news (the set is bounded: a flood of targets logs no more)."""
    if (where, what) not in _WARNED and len(_WARNED) < 4096:
        _WARNED.add((where, what))
        log.log(level, message, *args)


def parse_page(
    text: str, table: PromTable | None, where: str, deadline: float | None = None, heads: Heads | None = None
) -> Page:
    """`promtext.parse` of what the table reads (everything without a table); past the deadline: FetchError."""
    try:
        return parse(text, deadline=deadline, only=table.read_names if table is not None else None, heads=heads)
    except ParseTimeout as exc:
        raise FetchError("timeout", f"{where}: {exc}") from None


def parse_checked(
    text: str, table: PromTable | None, where: str, deadline: float | None = None, heads: Heads | None = None
) -> Page:
    """Parse and check (`check_page`). `heads`: the target's own cache of line heads (promtext.Heads), kept by
    its adapter across scrapes."""
    return check_page(parse_page(text, table, where, deadline, heads), table, where)


def check_page(page: Page, table: PromTable | None, where: str) -> Page:
    """A page with nothing of its server type on it is an error (garbage, an HTML login page...); series on it
    twice are dropped but the first (`dedupe`).

    A page of the right type without the names we map is the server answering (up=1): the missing
    fields are named once, at info level."""
    if not page.samples and not page.skipped:
        raise FetchError("bad_body", f"{where}: no Prometheus samples in the page ({page.errors} bad lines)")
    dropped = dedupe(page)
    if dropped:
        once(
            where,
            "duplicates",
            logging.WARNING,
            "%s: %d series on the page twice (same name and labels); kept the first of each",
            where,
            dropped,
        )
    if table is not None:
        wanted = table.names
        if not any(s.name in wanted for s in page.samples) and not (
            table.prefix
            and any(name.startswith(table.prefix) for name in (*page.skipped, *(s.name for s in page.samples)))
        ):
            raise FetchError("bad_body", f"{where}: none of {table.server_type}'s metrics on the page")
        missing: Sequence[str] = ()
        if (where, "missing") not in _WARNED and _CHECKED.get(where) != len(page.samples):  # said once per target
            if len(_CHECKED) < 4096:
                _CHECKED[where] = len(page.samples)
            missing = table.missing(page)
        if missing:
            once(
                where,
                "missing",
                logging.INFO,
                "%s: %s page without the metrics for %s (this build or its configuration does not export them)",
                where,
                table.server_type,
                ", ".join(missing),
            )
    return page
