"""The contract between server adapters and the source that scrapes them.

An adapter (`servers/<type>.py`) reads a server into a `Reading` (gauges, counters, histograms per
model) through a `Fetcher`, and says how to recognise its server with `DETECT` rules; the target
source (`sources/target.py`) turns readings into `llm_server` points. This module sits below both:
adapters and sources import it, it imports neither.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, Protocol, TypeVar

from telegraf_llm_input import histogram as hist
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError, HttpPool, Response, get
from telegraf_llm_input.metric import Metric

MEASUREMENT = "llm_server"
QUANTILES = ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99"))
COUNT_QUANTILES = ((0.5, "p50"), (0.95, "p95"))
"""Of per-request counts (tokens per request): the median and the long tail, in the histogram's own unit."""
STANDARD_RATES = ("prompt_tokens_total", "generation_tokens_total", "requests_total")

P = ParamSpec("P")
T = TypeVar("T")

Speed = tuple[str, str] | tuple[str, str, float]
"""(counter, counter[, plus]): a field that is Δfirst / Δsecond (+ plus) over the interval."""

OFF_LOOP_BYTES = 256 * 1024
"""Bodies at least this big are decoded in a worker thread (small ones: the thread hop costs more)."""


class Fetcher:
    """A target's HTTP access as adapters see it (paths, not URLs)."""

    def __init__(self, pool: HttpPool, target: TargetConfig, deadline: float | None = None):
        self.pool = pool
        self.target = target
        self.deadline = deadline
        """`time.monotonic()` by which every request of this gather must be done."""

    async def get(
        self, path: str, *, auth: bool = True, retries: int | None = None, accept: tuple[int, ...] = ()
    ) -> Response:
        return await get(
            self.pool, self.target, path, auth=auth, retries=retries, accept=accept, deadline=self.deadline
        )

    async def text(
        self, path: str, *, auth: bool = True, retries: int | None = None, accept: tuple[int, ...] = ()
    ) -> str:
        return await self.text_of(await self.get(path, auth=auth, retries=retries, accept=accept))

    async def json(
        self, path: str, *, auth: bool = True, retries: int | None = None, accept: tuple[int, ...] = ()
    ) -> object:
        """The parsed JSON document: `object`, so an adapter checks its shape before it trusts one."""
        return await self.json_of(await self.get(path, auth=auth, retries=retries, accept=accept))

    async def text_of(self, resp: Response) -> str:
        return await self._decode(resp.text, resp.body)

    async def json_of(self, resp: Response) -> object:
        return await self._decode(resp.json, resp.body)

    async def off_loop(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`func(*args)` in a worker thread: parsing a huge page must not stall every other source.

        The gather's deadline still holds: the source stops waiting at its budget (`ServerSource`),
        and work that can check `self.deadline` (the Prometheus parser) stops by itself.
        """
        return await asyncio.to_thread(func, *args, **kwargs)

    async def sized(self, size: int, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`func(*args)` on the loop for a page under OFF_LOOP_BYTES, else in a worker thread: for a usual page
        the thread hop (and the GIL handed back and forth) costs more than the work."""
        return func(*args, **kwargs) if size < OFF_LOOP_BYTES else await self.off_loop(func, *args, **kwargs)

    async def _decode(self, func: Callable[[], T], body: bytes | bytearray) -> T:
        return await self.sized(len(body), func)


@dataclass
class ModelReading:
    """What one scrape says about one model (or the whole server when it has no model label)."""

    model: str | None
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    """Counter -> its total now (summed over its series)."""
    histograms: dict[str, hist.Histogram] = field(default_factory=dict)
    """Field prefix (`ttft`) -> cumulative histogram (summed over its series)."""
    counter_series: dict[str, dict[hist.LabelKey, float]] = field(default_factory=dict)
    """Counter -> the series (label sets) summed into it (vLLM engines, SGLang ranks): the interval's
    increase is taken per series, then summed. Absent: the total is the one series."""
    histogram_series: dict[str, dict[hist.LabelKey, hist.Histogram]] = field(default_factory=dict)
    """Same for histograms."""
    speeds: dict[str, Speed] = field(default_factory=dict)
    """Field -> (counter, counter[, plus]): Δfirst / Δsecond (+ plus) over the interval (llama.cpp tokens per
    busy second, prefix-cache hits per queried token, tokens per finished request); absent when Δsecond is 0."""
    count_histograms: frozenset[str] = frozenset()
    """Histogram prefixes counting things per request (tokens): `<prefix>_p50`, `_p95`, `_mean`, unscaled."""
    rated: tuple[str, ...] | None = STANDARD_RATES
    """Counters that get a `_per_s` rate; None: all of them."""
    hist_scale: float = 1000.0
    hist_suffix: str = "_ms"
    measurement: str = MEASUREMENT
    tags: dict[str, str] = field(default_factory=dict)
    """Extra tags (a `prometheus` target's series labels)."""

    def series(self, counter: str) -> dict[hist.LabelKey, float]:
        return self.counter_series.get(counter) or {(): self.counters[counter]}

    def hist_series(self, prefix: str) -> dict[hist.LabelKey, hist.Histogram]:
        return self.histogram_series.get(prefix) or {(): self.histograms[prefix]}


@dataclass
class Reading:
    models: list[ModelReading] = field(default_factory=list)
    health: dict[str, int] = field(default_factory=dict)
    """Overrides of `up=1` (e.g. busy=1, loading=1, up=0)."""
    extra: list[Metric] = field(default_factory=list)
    """Other measurements (tags `target`, `server_type` are added)."""
    server_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    """Tags of the server itself (`server_version`) for its llm_server points; the last ones are kept while
    an answer has none and on the points saying it is down."""


class Adapter(Protocol):
    server_type: str

    async def read(self, fetch: Fetcher) -> Reading:
        """Read the server; raise FetchError when it cannot be read at all (-> up=0)."""
        ...


def version_tags(version: object) -> dict[str, str]:
    """`{"server_version": ...}` from what a server says its version is; {} when it says nothing usable."""
    if isinstance(version, str) and 0 < len(version.strip()) <= 64 and version.isprintable():
        return {"server_version": version.strip()}
    return {}


def rate_name(counter: str) -> str:
    return counter.removesuffix("_total") + "_per_s"


class Answers:
    """What a server answers on a few paths, each fetched at most once (no retry) while detecting."""

    def __init__(self, fetch: Fetcher):
        self._fetch = fetch
        self._cache: dict[str, str | None] = {}
        self.errors: list[FetchError] = []

    async def text(self, path: str) -> str | None:
        if path not in self._cache:
            try:
                self._cache[path] = await self._fetch.text(path, retries=0)
            except FetchError as exc:
                self.errors.append(exc)
                self._cache[path] = None
        return self._cache[path]

    async def json(self, path: str) -> object:
        text = await self.text(path)
        if text is None:
            return None
        try:
            return jsonlib.loads(text)
        except ValueError:
            return None


@dataclass(frozen=True)
class Rule:
    """One way a server type shows itself, checked against what it answers on `path` (declarative: a
    server module lists its rules in `DETECT`; any rule that holds identifies it).

    A text rule: the page contains `contains`. A JSON rule: the document is an object with every key of
    `keys` and, when given, at least one of `any_keys`; with `list_key`, its `list_key` is a list, each item
    an object with `each_has` when that is given.
    """

    path: str
    contains: str | None = None
    keys: tuple[str, ...] = ()
    any_keys: tuple[str, ...] = ()
    list_key: str | None = None
    each_has: str | None = None

    async def holds(self, answers: Answers) -> bool:
        if self.contains is not None:
            page = await answers.text(self.path)
            return page is not None and self.contains in page
        doc = await answers.json(self.path)
        if not isinstance(doc, dict) or not all(k in doc for k in self.keys):
            return False
        if self.any_keys and not any(k in doc for k in self.any_keys):
            return False
        if self.list_key is not None:
            items = doc.get(self.list_key)
            if not isinstance(items, list):
                return False
            if self.each_has is not None:
                return all(isinstance(item, dict) and self.each_has in item for item in items)
        return True
