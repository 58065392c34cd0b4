"""Any Prometheus page: include/exclude name globs; gauges as they are, counters also as
`<name>_per_s`, histograms as interval percentiles `<name>_p50`... in the page's own unit.
One metric per label set (labels become tags); measurement from the target's `measurement`."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from telegraf_llm_input import histogram as hist
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.promtext import Heads, Page, family_name
from telegraf_llm_input.servers.base import Fetcher, ModelReading, Reading
from telegraf_llm_input.servers.promtable import parse_checked

TYPE = "prometheus"
NAME = "prometheus"
_FIELD_OK = re.compile(r"[^a-zA-Z0-9_]")
_RESERVED_TAGS = {"target", "server_type"}


def wanted(name: str, include: list[str], exclude: list[str]) -> bool:
    if include and not any(fnmatchcase(name, g) for g in include):
        return False
    return not any(fnmatchcase(name, g) for g in exclude)


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
        kind = page.types.get(family, "untyped")
        if not wanted(family, include, exclude) or s.name.endswith("_created"):
            continue
        if kind == "histogram":
            histograms.add(family)
            continue
        if kind == "summary" and "quantile" in s.labels:
            continue
        if s.value != s.value:
            continue
        field = _FIELD_OK.sub("_", s.name)
        target = reading(s.labels)
        if kind == "counter" or (kind == "summary" and s.name != family):
            target.counters[field] = s.value
        else:
            target.gauges[field] = s.value
    for family in sorted(histograms):
        for key, h in hist.collect(page.samples, family).items():
            reading(dict(key)).histograms[_FIELD_OK.sub("_", family)] = h
    return list(readings.values())


class PrometheusAdapter:
    server_type = TYPE

    def __init__(self, target: TargetConfig):
        self.target = target
        self._heads: Heads = {}

    async def read(self, fetch: Fetcher) -> Reading:
        path = self.target.metrics_path or "/metrics"
        text = await fetch.text(path)
        page = await fetch.sized(
            len(text), parse_checked, text, None, f"{self.target.display_name}{path}", fetch.deadline, self._heads
        )
        return Reading(
            await fetch.sized(
                len(text), read_any, page, self.target.include, self.target.exclude, self.target.measurement
            ),
            server_type=TYPE,
        )


def make(target: TargetConfig) -> PrometheusAdapter:
    return PrometheusAdapter(target)
