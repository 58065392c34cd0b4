"""`llm_server`: one source per target: fetch, map to our schema, derive interval numbers.

Server modules (`telegraf_llm_input/servers/`) only say how to read a server into a `Reading`
(gauges, counters, histograms per model); everything that makes the numbers true lives here
once: rates from counter deltas, interval percentiles from bucket deltas, reset handling,
health fields, and logging a failure once.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from telegraf_llm_input import histogram as hist
from telegraf_llm_input.aio import within
from telegraf_llm_input.config import Config
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError, HttpPool
from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import FieldValue, Metric, clean_fields
from telegraf_llm_input.rates import increase, ratio
from telegraf_llm_input.servers import detect, make_adapter
from telegraf_llm_input.servers.base import (
    COUNT_QUANTILES,
    MEASUREMENT,
    QUANTILES,
    Adapter,
    Fetcher,
    ModelReading,
    Reading,
    rate_name,
)
from telegraf_llm_input.sources.base import GatherContext, Source, SourceEnv

log = get_logger("server")
_QS = tuple(q for q, _ in QUANTILES)
_COUNT_QS = tuple(q for q, _ in COUNT_QUANTILES)


@dataclass
class Baseline:
    """What the previous scrapes of one model left for the next one: every series of every counter."""

    at_ns: int
    """Gather time, integer nanoseconds (intervals are exact differences)."""
    counters: dict[str, dict[hist.LabelKey, float]]
    histograms: dict[str, dict[hist.LabelKey, hist.Histogram]]
    since: dict[str, int] = field(default_factory=dict)
    """Counter/histogram -> gather time of its values where that is older than `at_ns`: carried over from a scrape
    whose answer lacked it, so its next increase covers the whole interval since it was last read."""

    @classmethod
    def of(cls, reading: ModelReading, at_ns: int, prev: Baseline | None = None) -> Baseline:
        """The reading's series at `at_ns`; what `prev` had and the reading lacks is carried with its own time."""
        out = cls(
            at_ns,
            {n: reading.series(n) for n in reading.counters},
            {p: reading.hist_series(p) for p in reading.histograms},
        )
        if prev is not None:
            for name in prev.counters.keys() - out.counters.keys():
                out.counters[name] = prev.counters[name]
                out.since[name] = prev.start(name)
            for name in prev.histograms.keys() - out.histograms.keys():
                out.histograms[name] = prev.histograms[name]
                out.since[name] = prev.start(name)
        return out

    def start(self, name: str) -> int:
        """When the kept values of counter/histogram `name` were read."""
        return self.since.get(name, self.at_ns)

    @classmethod
    def zero(cls, reading: ModelReading, at_ns: int) -> Baseline:
        """Every series at 0 (a server just started), with the reading's own series and buckets."""
        return cls(
            at_ns,
            {n: {k: 0.0 for k in reading.series(n)} for n in reading.counters},
            {
                p: {
                    k: hist.Histogram.of(h.bounds, [0.0] * len(h.bounds), 0.0, 0.0)
                    for k, h in reading.hist_series(p).items()
                }
                for p in reading.histograms
            },
        )


@dataclass
class Derived:
    fields: dict[str, FieldValue]
    resets: list[str]
    """Counters/histograms with a series that went down or changed buckets (a server restarted)."""


def derive(prev: Baseline | None, cur: ModelReading, at_ns: int) -> Derived:
    """Fields for one model: gauges and counters as read; rates and percentiles over the interval.

    Pure. First scrape (prev None): no rates, no percentiles. Increases are Prometheus'
    `sum(increase())`: per series, a series that went down counting from 0, then summed (listed in
    `resets`). One rule for every derived field (rates, ratios, percentiles): a series new since the
    previous scrape counts from 0, whether its counter had other series then or none (client libraries
    create a labelled series at its first increment: vLLM's first `error` finish, TGI's first failure).
    A counter the previous answer lacked but an earlier one had is compared with that earlier value, over
    the time since (`Baseline.since`); a ratio needs both its counters over the same interval. A histogram
    with no new observations gives no percentile. Values keep the types the server gave; the schema's
    types are applied once for every sink (fieldtypes.py).
    """
    out: dict[str, float | int | None] = dict(cur.gauges)
    out.update(cur.counters)
    resets: list[str] = []
    if prev is None or at_ns <= prev.at_ns:
        return Derived(clean_fields(out), resets)
    deltas: dict[str, float] = {}
    for name in cur.counters:
        d, reset = increase(prev.counters.get(name, {}), cur.series(name))
        if reset:
            resets.append(name)
        deltas[name] = d
        if cur.rated is None or name in cur.rated:
            out[rate_name(name)] = d / ((at_ns - prev.start(name)) / 1e9)

    def same_interval(a: str, b: str) -> bool:
        return a in deltas and b in deltas and prev.start(a) == prev.start(b)

    if same_interval("request_errors_total", "requests_total"):
        out["error_ratio"] = ratio(deltas["request_errors_total"], deltas["requests_total"])
    for name, (num, den, *plus) in cur.speeds.items():
        if same_interval(num, den):
            value = ratio(deltas[num], deltas[den])
            out[name] = None if value is None else value + sum(plus)
    for prefix in cur.histograms:
        d_h, reset = hist.increase(prev.histograms.get(prefix, {}), cur.hist_series(prefix))
        if reset:
            resets.append(prefix)
        if d_h is None or d_h.count <= 0:
            continue
        counts = prefix in cur.count_histograms
        scale, suffix = (1.0, "") if counts else (cur.hist_scale, cur.hist_suffix)
        names, mean_name = _histogram_fields(prefix, suffix, counts)
        for name, value in zip(names, hist.quantiles(_COUNT_QS if counts else _QS, d_h)):
            if value is not None and value == value:  # NaN: malformed buckets, no field
                out[name] = value * scale
        m = hist.mean(d_h)
        if m is not None:
            out[mean_name] = m * scale
    return Derived(clean_fields(out), resets)


@functools.lru_cache(maxsize=1024)
def _histogram_fields(prefix: str, suffix: str, counts: bool) -> tuple[tuple[str, ...], str]:
    """A histogram's percentile field names and its mean's (the same few every gather: built once)."""
    table = COUNT_QUANTILES if counts else QUANTILES
    return tuple(f"{prefix}_{label}{suffix}" for _, label in table), f"{prefix}_mean{suffix}"


class ServerSource:
    """Scrapes one target with one adapter; keeps the previous snapshot per model.

    Bounded whatever the server does: at most `max_models` readings per gather are kept (the
    rest are counted in `stats()["models_dropped"]`, logged once), and the baseline of a series
    not seen for `FORGET_AFTER` gathers is dropped, so labels that change every scrape cannot grow
    memory.
    """

    FORGET_AFTER = 3
    """Gathers a series may be absent (a flapping scrape) before its baseline is forgotten."""

    def __init__(self, target: TargetConfig, adapter: Adapter, pool: HttpPool):
        self.target = target
        self.adapter = adapter
        self.name = f"server:{target.display_name}"
        self._pool = pool.retain()
        self._fetch = Fetcher(pool, target)
        self._baselines: dict[tuple, Baseline] = {}
        self._seen: dict[tuple, int] = {}
        """Series key -> number of the last gather that read it."""
        self._gathers = 0
        self._models_dropped = 0
        self._last_models: list[str | None] = []
        self._state = StateLog(log)
        self._server_type: str | None = None if adapter.server_type == "auto" else adapter.server_type
        self._server_tags: dict[str, str] = {}
        """The last answer's `Reading.tags` (its version): also on the points saying it is down."""
        self.down_reason: str | None = None
        """Why the last scrape failed (None when it worked): the text of the `down:` log line."""
        self._down_series: list[dict[str, str]] = []
        """Tag sets of the last `up=0` points, closed with `up=1` on recovery when the answer names other series."""

    def _tags(self, server_type: str | None, model: str | None, server: bool = True) -> dict[str, str]:
        """A point's tags; `server`: also the server's own (`server_version`, llm_server points only)."""
        tags = {**self._server_tags, **self.target.tags} if server else dict(self.target.tags)
        tags["target"] = self.target.display_name
        if server_type:
            tags["server_type"] = server_type
        if model:
            tags["model"] = model
        return tags

    @property
    def tracked_series(self) -> int:
        """Series (model, label set) whose baseline is kept for the next gather's rates."""
        return len(self._baselines)

    def stats(self) -> dict[str, int]:
        return {"models_dropped": self._models_dropped}

    def missed(self, ctx: GatherContext, reason: str) -> Sequence[Metric]:
        """The points for a gather this source could not finish in time (the agent logs why): `up=0`."""
        self.down_reason = reason
        return self._down(ctx, ctx.deadline_s * 1000)

    def _down(self, ctx: GatherContext, scrape_ms: float, health: dict[str, int] | None = None) -> list[Metric]:
        """`up=0` (with `health`: those fields) on the series of the models it last had."""
        models = self._last_models or [None]
        # `type: auto` before any detection: `unknown`, so a server_type filter still sees the outage
        self._down_series = [self._tags(self._server_type or "unknown", m) for m in models]
        fields = {**(health or {"up": 0}), "scrape_ms": scrape_ms}
        return [Metric(MEASUREMENT, tags, dict(fields), ctx.time_ns) for tags in self._down_series]

    def _close_down_series(self, metrics: list[Metric], health: dict[str, int], scrape_ms: float, time_ns: int) -> None:
        """A target that was down before its models (or its type) were known said `up=0` on a series the answer
        no longer has: give that series `up=1`, or its last value (0) would keep `min(up)` and `last(up)` panels
        showing the target down until the series expires."""
        now = {tuple(sorted(m.tags.items())) for m in metrics if m.measurement == MEASUREMENT}
        for tags in self._down_series:
            if tuple(sorted(tags.items())) not in now:
                # the target's health now (a series that said loading=1 says loading=0)
                metrics.append(Metric(MEASUREMENT, tags, {**health, "scrape_ms": scrape_ms}, time_ns))
        self._down_series = []

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        started = time.monotonic()
        self._gathers += 1
        # Leave a little of the gather's time to report the outcome (up=0 needs to arrive too).
        budget = max(0.1, ctx.deadline_s * 0.9 - 0.05)
        fetch = Fetcher(self._fetch.pool, self.target, started + budget)
        try:
            # Fetches stop at the budget; this bounds what an adapter does after them (parsing).
            reading = await within(self.adapter.read(fetch), budget + 0.06 * ctx.deadline_s)
        except Exception as exc:  # noqa: BLE001 - a lying server is down, never a crash
            scrape_ms = (time.monotonic() - started) * 1000
            if isinstance(exc, FetchError):
                reason = str(exc)
            elif isinstance(exc, asyncio.TimeoutError):
                reason = f"no complete reading within {budget:.3g}s (the gather deadline)"
            else:
                reason = f"unreadable answer ({type(exc).__name__}: {exc})"
            self.down_reason = reason
            self._state.fail("scrape", f"target {self.target.display_name}: down: {reason}")
            return self._down(ctx, scrape_ms)
        now = time.monotonic()
        scrape_ms = (now - started) * 1000
        server_type = reading.server_type or self._server_type
        self._server_type = server_type
        if reading.tags:  # an answer without them (llama.cpp busy, /props timed out) keeps the last ones
            self._server_tags = dict(reading.tags)
        self.down_reason = None
        if self._state.is_failing("scrape"):  # the line is built only when it is logged
            self._state.ok("scrape", f"target {self.target.display_name}: up again")
        health = {"up": 1, "busy": 0, "loading": 0, **reading.health}
        if not health["up"] and not reading.models:
            # it answers but serves nothing (llama.cpp loading a model): one point per series it last had, as
            # when it is down, so no series says up while nothing serves
            return self._down(ctx, scrape_ms, health)
        readings = self._capped(reading)
        metrics: list[Metric] = []
        for m in readings:
            key = (m.measurement, m.model, tuple(sorted(m.tags.items())))
            prev = self._baselines.get(key)
            # the gather's timestamp: rates agree with the points' own times
            derived = derive(prev, m, ctx.time_ns)
            if derived.resets:
                log.info(
                    "target %s%s: %s went down or changed buckets (server restarted?); counted from 0",
                    self.target.display_name,
                    f" model {m.model}" if m.model else "",
                    ", ".join(sorted(derived.resets)),
                )
            if m.counters or m.histograms:
                self._baselines[key] = Baseline.of(m, ctx.time_ns, prev)
            # else an answer without its counters (llama.cpp busy, `/metrics` blocked): the last ones stay the
            # baseline, so the next answer's rates cover the whole interval and no token goes uncounted
            self._seen[key] = self._gathers
            fields = derived.fields
            if m.measurement == MEASUREMENT:
                fields = {**health, "scrape_ms": scrape_ms, **fields}
            tags = {**m.tags, **self._tags(server_type, m.model, m.measurement == MEASUREMENT)}
            metrics.append(Metric(m.measurement, tags, fields, ctx.time_ns))
        self._forget_unseen()
        if not any(m.measurement == MEASUREMENT for m in readings):
            metrics.append(
                Metric(MEASUREMENT, self._tags(server_type, None), {**health, "scrape_ms": scrape_ms}, ctx.time_ns)
            )
        for extra in reading.extra[: self.target.max_models]:
            metrics.append(
                Metric(
                    extra.measurement, {**self._tags(server_type, None, False), **extra.tags}, extra.fields, ctx.time_ns
                )
            )
        self._last_models = [m.model for m in readings if m.measurement == MEASUREMENT] or [None]
        self._close_down_series(metrics, health, scrape_ms, ctx.time_ns)
        return metrics

    def _capped(self, reading: Reading) -> list[ModelReading]:
        """At most `max_models` readings (and extra points), the same ones each gather (sorted)."""
        cap = self.target.max_models
        over = max(0, len(reading.models) - cap) + max(0, len(reading.extra) - cap)
        if not over:
            return reading.models
        self._models_dropped += over
        found = max(len(reading.models), len(reading.extra))
        self._state.fail(
            "max_models",
            f"target {self.target.display_name}: {found} models/series "
            f"on the page, over max_models ({cap}); the rest are dropped (llm_agent models_dropped)",
        )
        return sorted(reading.models, key=lambda m: (m.measurement, m.model or "", sorted(m.tags.items())))[:cap]

    def _forget_unseen(self) -> None:
        oldest = self._gathers - self.FORGET_AFTER
        stale = [key for key, seen in self._seen.items() if seen <= oldest]
        for key in stale:
            del self._seen[key]
            self._baselines.pop(key, None)

    def down_reasons(self) -> dict[str, str]:
        return {self.target.display_name: self.down_reason} if self.down_reason is not None else {}

    async def close(self) -> None:
        await self._pool.release()


def server_source(target: TargetConfig, pool: HttpPool) -> ServerSource:
    """The source of one target, with the adapter its `type:` names."""
    return ServerSource(target, make_adapter(target), pool)


async def detect_target(url: str, timeout: float, pool: HttpPool) -> TargetConfig | None:
    """The target at `url` typed by what it answers (discovery), or None when it is no model server we know."""
    probe = TargetConfig(url=url, timeout=timeout, retries=0)
    try:
        kind = await detect(Fetcher(pool, probe))
    except FetchError:
        return None
    return None if kind is None else TargetConfig(url=url, type=kind)


def build(config: Config, env: SourceEnv) -> list[Source]:
    """One source per configured target (`targets:` given; absent: discovery, `sources/discovery.py`)."""
    pool = env.http_pool()
    return [server_source(t, pool) for t in config.targets or []]
