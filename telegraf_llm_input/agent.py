"""The gather loop: run every source concurrently under a deadline, then hand the results to sinks.

A source that is slow or failing costs only its own results: it is counted, logged once, and
never delays the others past the deadline. At most one call per source is in flight: a source
still busy from an earlier gather is skipped, so a hung server cannot pile up work.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from telegraf_llm_input.fieldtypes import Conformer
from telegraf_llm_input.lineprotocol import line_template, ms_text
from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import FieldValue, Metric, Rendered, rendered_fields
from telegraf_llm_input.processors.base import Processor
from telegraf_llm_input.sinks.base import Sink, WritesNowait
from telegraf_llm_input.sources.base import Finds, GatherContext, Source

log = get_logger("agent")


FREEZE_AFTER = 3
"""After this many gathers everything alive (modules, config, the caches the first gathers built) is moved out of
the cyclic collector's sight (`gc.freeze()`, after one collection): a full collection walked all of it, holding
the interpreter lock for ~20 ms, the probe thread's clock with it. Only what is alive then is frozen, once: later
garbage is collected as ever, so memory stays flat (bench.memory)."""


@dataclass
class SourceStats:
    errors: int = 0
    last_duration_s: float = 0.0
    last_metrics: int = 0
    last_ok: bool = True
    in_flight: asyncio.Task | None = field(default=None, repr=False)
    started: float = 0.0
    """`time.monotonic()` when the source's last gather started, and when it ended."""
    ended: float = 0.0

    def finished(self, task: asyncio.Future) -> None:
        """The source's task is done: when, and its exception retrieved (asyncio would print it if never read)."""
        self.ended = time.monotonic()
        _consume(task)


class Agent:
    def __init__(
        self,
        sources: Sequence[Source],
        sinks: Sequence[Sink],
        *,
        deadline_s: float,
        global_tags: Mapping[str, str] | None = None,
        processors: Sequence[Processor] = (),
    ):
        self.sources = list(sources)
        self.sinks = sinks
        self.processors = list(processors)
        self.deadline_s = deadline_s
        self.global_tags = dict(global_tags or {})
        self.stats = {s.name: SourceStats() for s in self.sources}
        self.gathers = 0
        self._state = StateLog(log)
        self._sink_state = StateLog(log)
        self._types = Conformer(log.warning)
        self._finders: tuple[int, list[Source]] = (-1, [])
        self._errors = 0
        """Every source's `errors`, summed as they are counted (`source_errors`)."""
        self._points: dict[tuple[str, str] | None, tuple[tuple[str, ...], dict[str, str], str | None]] = {}
        """Each `llm_agent` point's field keys, tags and line template (`_point`): None for the totals,
        (`source`, name) or (`output`, name) for the others."""

    @property
    def sinks(self) -> list[Sink]:
        return self._sinks

    @sinks.setter
    def sinks(self, sinks: Sequence[Sink]) -> None:
        self._sinks = list(sinks)
        self._writers = [(sink, _writer(sink)) for sink in self._sinks]
        """Each sink and its `write_nowait`, or its `write` (a coroutine to await) when it has none."""
        self._totals: tuple[str, ...] = ()
        """The totals point's field keys: its own, then the sinks' counters (the same names every gather)."""
        self._outputs: list[tuple[int, str, tuple[str, ...]]] | None = None
        """The sinks with counters of their own (`output_*`), each also written as a point of its own (tag `output`):
        its index, name and those counters' names."""

    async def _run_sources(self, ctx: GatherContext) -> list[Metric]:
        """Every source's metrics, in the sources' order: each runs as its own task, all under one deadline (one
        wait and one timer for all of them, not one each)."""
        started = time.monotonic()
        runs: list[tuple[Source, SourceStats, asyncio.Task | None]] = []
        for source in self.sources:
            stats = self.stats[source.name]
            if stats.in_flight is not None and not stats.in_flight.done():
                runs.append((source, stats, None))
                continue
            task = asyncio.ensure_future(source.gather(ctx))
            stats.started = started
            task.add_done_callback(stats.finished)  # also: a late failure after the deadline is no traceback
            stats.in_flight = task
            runs.append((source, stats, task))
        pending = [run[2] for run in runs if run[2] is not None]
        if pending:
            await asyncio.wait(pending, timeout=ctx.deadline_s)
        metrics: list[Metric] = []
        for source, stats, ran in runs:
            metrics.extend(self._outcome(source, stats, ran, ctx))
        return metrics

    def _outcome(
        self, source: Source, stats: SourceStats, task: asyncio.Task | None, ctx: GatherContext
    ) -> list[Metric]:
        """What one source gave this gather (a stand-in when it was busy or late), with its stats and log lines."""
        if task is None:
            stats.errors += 1
            self._errors += 1
            stats.last_ok = False
            stats.last_duration_s = 0.0
            stand_in = _stand_in(source, ctx, "still busy with an earlier gather")
            stats.last_metrics = len(stand_in)
            self._state.fail(
                source.name,
                f"source {source.name}: still busy with an earlier gather; skipped"
                + ("; reported as down" if stand_in else ""),
            )
            return stand_in
        metrics: list[Metric] = []
        if not task.done():
            stats.last_duration_s = time.monotonic() - stats.started
            stats.errors += 1
            self._errors += 1
            stats.last_ok = False
            metrics = _stand_in(source, ctx, f"no result within {ctx.deadline_s:g}s")
            self._state.fail(
                source.name,
                f"source {source.name}: no result within {ctx.deadline_s:g}s; results "
                f"discarded{'; reported as down' if metrics else ''}",
            )
        else:
            stats.in_flight = None
            stats.last_duration_s = stats.ended - stats.started
            if (exc := task.exception()) is not None:
                stats.errors += 1
                self._errors += 1
                stats.last_ok = False
                self._state.fail(source.name, f"source {source.name}: {_describe(exc)}")
            else:
                metrics = list(task.result() or [])
                stats.last_ok = True
                if self._state.is_failing(source.name):
                    self._state.ok(source.name, f"source {source.name}: recovered")
        stats.last_metrics = len(metrics)
        return metrics

    async def _find(self, ctx: GatherContext) -> float:
        """Adds the sources that finders (discovery) found; the seconds this took (out of the gather's deadline)."""
        if self._finders[0] != len(self.sources):  # a Protocol isinstance is slow: asked again only when sources change
            self._finders = (len(self.sources), [s for s in self.sources if isinstance(s, Finds)])
        finders = self._finders[1]
        if not finders:
            return 0.0
        started = time.monotonic()
        for finder in finders:
            left = ctx.deadline_s - (time.monotonic() - started)
            try:
                found = await asyncio.wait_for(cast(Finds, finder).find(ctx), max(0.0, left))
            except Exception as exc:  # noqa: BLE001 - finding nothing this time is not a lost gather
                self._state.fail((finder.name, "find"), f"source {finder.name}: {_describe(exc)}")
                continue
            self._state.ok((finder.name, "find"), f"source {finder.name}: recovered")
            for source in found:
                if source.name not in self.stats:
                    self.sources.append(source)
                    self.stats[source.name] = SourceStats()
        return time.monotonic() - started

    async def gather_once(self, time_ns: int | None = None) -> list[Metric]:
        """One gather: finders (discovery), every source, processors, internal stats, then every sink.

        With no source (an idle agent) there is nothing to find, run, tag or conform: the gather is its own
        `llm_agent` point, whose tags are made once and whose values have their schema types as they are made."""
        started = time.monotonic_ns()
        if time_ns is None:
            time_ns = time.time_ns()
        metrics: list[Metric] = []
        if self.sources:
            ctx = GatherContext(time_ns=time_ns, deadline_s=self.deadline_s)
            spent = await self._find(ctx)
            if spent:  # what finding took is gone from the sources' deadline: the gather keeps its bound
                ctx = GatherContext(time_ns=time_ns, deadline_s=max(0.1, self.deadline_s - spent))
            metrics = await self._run_sources(ctx)
        metrics = self._completed(metrics, started, time_ns)
        writing = self._write(metrics)
        if writing is not None:
            await writing
        return metrics

    def gather_nowait(self) -> Coroutine[Any, Any, object] | None:
        """A gather (`gather_once`) done as far as it goes without waiting: None when that is all of it (an idle
        agent's, each sink taking its lines at once), else the coroutine that does the rest.

        Why: an idle interval is then plain calls, no coroutine made or stepped (`Trigger.every`)."""
        if self.sources:
            return self.gather_once()
        started = time.monotonic_ns()
        return self._write(self._completed([], started, time.time_ns()))

    def _completed(self, metrics: list[Metric], started: int, time_ns: int) -> list[Metric]:
        """The gather's metrics processed, tagged and conformed, its `llm_agent` points added."""
        for processor in self.processors:
            try:
                metrics = processor.process(metrics)
            except Exception as exc:  # a processor bug must not lose the gather
                self._state.fail(
                    ("processor", type(processor).__name__), f"processor {type(processor).__name__}: {_describe(exc)}"
                )
        self.gathers += 1
        if self.gathers == FREEZE_AFTER:
            gc.collect()  # garbage first, so that only what is alive is frozen
            gc.freeze()
        dropped = self._types.dropped  # what earlier gathers dropped: this gather's count shows in the next
        if metrics:
            if self.global_tags:
                metrics = [m.with_tags(self.global_tags) for m in metrics]
            metrics = self._types.conform(metrics)  # the one place every sink's values get the schema's types
        self._agent_metrics(metrics, time_ns, ms_text(time.monotonic_ns() - started), dropped)
        return metrics

    def problems(self) -> dict[str, str]:
        """What is failing now, each with the one line the log gave for it: by source name, `processor <name>`
        and `output:<name>`."""
        out = {" ".join(map(str, k)) if isinstance(k, tuple) else str(k): v for k, v in self._state.failing().items()}
        out.update({f"output:{k}": v for k, v in self._sink_state.failing().items()})
        return out

    def _write(self, metrics: list[Metric]) -> Coroutine[Any, Any, None] | None:
        """Every sink takes the gather: None when each took it at once (`write_nowait`), else the coroutine that
        waits for the one that did not and hands it to the rest."""
        for sink, write in self._writers:
            try:
                waiting = write(metrics)
            except Exception as exc:
                self._sink_state.fail(sink.name, f"output {sink.name}: {_describe(exc)}")
                continue
            if waiting is not None:
                return self._written(metrics, self._sinks.index(sink), waiting)
            if self._sink_state.is_failing(sink.name):
                self._sink_state.ok(sink.name, f"output {sink.name}: recovered")
        return None

    async def _written(self, metrics: list[Metric], index: int, waiting: Awaitable[None] | None) -> None:
        """`_write` from the sink at `index` on, which is `waiting`."""
        for sink, write in self._writers[index:]:
            try:
                if waiting is None:
                    waiting = write(metrics)
                if waiting is not None:
                    await waiting
            except Exception as exc:
                self._sink_state.fail(sink.name, f"output {sink.name}: {_describe(exc)}")
            else:
                if self._sink_state.is_failing(sink.name):
                    self._sink_state.ok(sink.name, f"output {sink.name}: recovered")
            waiting = None

    def _agent_metrics(self, points: list[Metric], time_ns: int, gather_ms: str, dropped: int) -> None:
        """Adds the `llm_agent` points, already tagged and typed (`gather_ms` and `duration_ms` floats, every other
        field an int: a count; sinks' `stats` and sources' are ints by contract), so they skip the conformer.
        `gather_ms` is the float's text (`ms_text`)."""
        sinks = self._sinks
        if len(sinks) == 1:
            total = sinks[0].stats()
            counts = [total]
        else:
            counts = [sink.stats() for sink in sinks]
            total = _summed(counts)
        if len(self._totals) != len(_TOTALS) + len(total):  # a sink's counters are the same names every gather
            self._totals = (*_TOTALS, *total)
        points.append(
            self._point(
                None,
                self._totals,
                (gather_ms, self.gathers, len(self.sources), self._errors, dropped, *total.values(), time_ns),
            )
        )
        if self._outputs is None:
            self._outputs = _outputs(sinks, counts)
        if self._outputs:  # which output is failing, when there are several
            self._output_points(points, counts, time_ns)
        for source in self.sources:
            stats = self.stats[source.name]
            extra = _source_stats(source)
            points.append(
                self._point(
                    ("source", source.name),
                    (*_PER_SOURCE, *extra),
                    (
                        stats.last_duration_s * 1000.0,
                        stats.errors,
                        stats.last_metrics,
                        1 if stats.last_ok else 0,
                        *extra.values(),
                        time_ns,
                    ),
                )
            )

    def _output_points(self, points: list[Metric], counts: list[Mapping[str, int]], time_ns: int) -> None:
        for i, name, keys in self._outputs or ():
            own = counts[i]
            points.append(self._point(("output", name), keys, (*[own[k] for k in keys], time_ns)))

    def _point(self, key: tuple[str, str] | None, keys: tuple[str, ...], values: tuple[FieldValue, ...]) -> Metric:
        """One `llm_agent` point of these field keys and `values` (then `time_ns`) and its line: its tags (its own
        over the global ones, as `Metric.with_tags`) and line template are made once per point and field keys, then
        only the values are filled in."""
        made = self._points.get(key)
        if made is None or (made[0] is not keys and made[0] != keys):
            tags = dict(self.global_tags)
            if key is not None:
                tags[key[0]] = key[1]
            made = self._points[key] = (keys, tags, line_template("llm_agent", tags, rendered_fields(keys, values)))
        _, tags, template = made
        if template is None:
            return Metric("llm_agent", tags, rendered_fields(keys, values), cast(int, values[-1]))
        return _rendered("llm_agent", tags, keys, values, template % values)

    async def close(self) -> None:
        for stats in self.stats.values():
            if stats.in_flight is not None and not stats.in_flight.done():
                stats.in_flight.cancel()
        for source in self.sources:
            try:
                await asyncio.wait_for(source.close(), timeout=0.5)
            except Exception as exc:
                log.debug("closing source %s: %s", source.name, _describe(exc))
        for sink in self.sinks:
            try:
                await asyncio.wait_for(sink.close(), timeout=2.0)
            except Exception as exc:
                log.warning("closing output %s: %s", sink.name, _describe(exc))


_TOTALS = ("gather_ms", "gathers", "sources", "source_errors", "fields_dropped")
"""The totals point's own fields; the sinks' counters follow."""
_PER_SOURCE = ("duration_ms", "errors", "metrics", "ok")
"""A source's point's fields; its own counters (`stats`) follow."""


_rendered = Rendered.of


def _outputs(sinks: list[Sink], counts: list[Mapping[str, int]]) -> list[tuple[int, str, tuple[str, ...]]]:
    """The sinks with counters of their own (`output_*`: a database's), by index, name and those counters' names (a
    sink's counters are the same names every gather)."""
    found = [
        (i, sink.name, tuple(k for k in own if k.startswith("output_")))
        for i, (sink, own) in enumerate(zip(sinks, counts))
    ]
    return [output for output in found if output[2]]


def _writer(sink: Sink) -> Callable[[Sequence[Metric]], Awaitable[None] | None]:
    return sink.write_nowait if isinstance(sink, WritesNowait) else sink.write


def _stand_in(source: Source, ctx: GatherContext, reason: str) -> list[Metric]:
    """What a source that could not answer in time reports instead (a server target: `up=0`), if anything."""
    missed = getattr(source, "missed", None)
    if missed is None:
        return []
    try:
        return list(missed(ctx, reason))
    except Exception as exc:  # a bug here must not lose the gather
        log.debug("source %s: no stand-in points: %s", source.name, _describe(exc))
        return []


def _summed(counts: list[Mapping[str, int]]) -> dict[str, int]:
    """Several sinks' counters, added up where they share a name."""
    total: dict[str, int] = {}
    for each in counts:
        for key, value in each.items():
            total[key] = total.get(key, 0) + value
    return total


def _source_stats(source: Source) -> dict[str, int]:
    """A source's own counters for its `llm_agent` point (e.g. `models_dropped`), if it keeps any."""
    stats = getattr(source, "stats", None)
    if stats is None:
        return {}
    try:
        return {k: int(v) for k, v in stats().items()}
    except Exception as exc:  # noqa: BLE001
        log.debug("source %s: no stats: %s", source.name, _describe(exc))
        return {}


def _consume(task: asyncio.Future) -> None:
    """Retrieve a finished task's exception so asyncio does not log "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, asyncio.TimeoutError) or not text:
        return type(exc).__name__
    return text
