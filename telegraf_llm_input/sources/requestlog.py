"""Request logs: JSON lines, one per request, aggregated per gather interval into `llm_requests`.

Telegraf's tail plugin would make each line its own point; dashboards need rates, error ratios and
latency percentiles per interval, per model or prompt variant, so we aggregate here. Each line is
parsed and reduced to a few numbers at once; prompt or response text in it is never kept, logged or
emitted. Lines count in the interval in which they are read (not by their timestamp). A line whose latency
is negative or not a finite number, or whose token count is negative, fractional or over
MAX_TOKENS, is malformed: counted in `malformed_lines`, never part of a percentile or a sum.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telegraf_llm_input.config import Config
from telegraf_llm_input.config.requestlog import DEFAULT_FIELDS, DEFAULT_OK_STATUSES, LogConfig
from telegraf_llm_input.jsontext import loads
from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.quantiles import Accumulator
from telegraf_llm_input.sources.base import GatherContext, Source, SourceEnv
from telegraf_llm_input.tailer import Tailer

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config

log = get_logger("logs")

MEASUREMENT = "llm_requests"
OTHER = "other"
"""Tag value for group values past the cap."""
MISSING = "none"
"""Tag value when a record lacks a group_by key."""
MAX_TAG_VALUE = 200
READ_CHUNK = 256 * 1024
TIME_SHARE = 0.5
"""Share of the gather deadline spent reading and parsing; the rest waits for the next gather."""
GROUP_CACHE = 10_000
EXACT_LIMIT = 100_000
"""Values per group and interval kept for exact percentiles; past this, a 1% sketch."""

MAX_TOKENS = 1_000_000_000
"""Tokens of one request above this are a broken log line, not a request (sums stay int64)."""

Getter = Callable[[dict], Any]


def field_getter(path: str) -> Getter:
    """Reads a key or a dotted path (`usage.prompt_tokens`) from a record; None when absent."""
    keys = path.split(".")
    if len(keys) == 1:
        return lambda rec: rec.get(path)

    def get(rec: dict) -> Any:
        if path in rec:
            return rec[path]
        value: Any = rec
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return get


def key_and_getter(path: str) -> tuple[str, Getter | None]:
    """A plain key is read inline with dict.get in the hot loop (getter None); a dotted path needs a call."""
    return (path, field_getter(path) if "." in path else None)


def number(value: Any) -> float | None:
    """A finite number from a JSON value (numbers, numeric strings); None otherwise."""
    if type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def checked_ms(value: Any, name: str) -> tuple[float | None, str]:
    """A latency from a record: (value, "") when it is a finite number >= 0, else (None, the problem)."""
    v = number(value)
    if v is None:
        return None, f"{name} is not a finite number"
    if v < 0:
        return None, f"negative {name}"
    return v, ""


def checked_tokens(value: Any, name: str) -> tuple[int | None, str]:
    """A token count: (count, "") when it is a whole number in [0, MAX_TOKENS], else (None, the problem)."""
    v = number(value)
    if v is None or v != int(v):
        return None, f"{name} is not a whole number"
    if not 0 <= v <= MAX_TOKENS:
        return None, f"{name} out of range (0..{MAX_TOKENS})"
    return int(v), ""


def checked_values(lat: Any, ttft: Any, prompt: Any, compl: Any) -> tuple[tuple[Any, ...], str]:
    """The four numbers of a record, checked: (values, "") or (_, the first problem)."""
    out: list[Any] = []
    for value, name, check in (
        (lat, "latency_ms", checked_ms),
        (ttft, "ttft_ms", checked_ms),
        (prompt, "prompt_tokens", checked_tokens),
        (compl, "completion_tokens", checked_tokens),
    ):
        if value is None:
            out.append(None)
            continue
        v, why = check(value, name)
        if why:
            return (None, None, None, None), why
        out.append(v)
    return tuple(out), ""


def tag_value(value: Any) -> str:
    if value is None:
        return MISSING
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return text[:MAX_TAG_VALUE] if text else MISSING


class _Group:
    __slots__ = ("requests", "errors", "latency", "ttft", "prompt_tokens", "completion_tokens", "other")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency = Accumulator(EXACT_LIMIT)
        self.ttft = Accumulator(EXACT_LIMIT)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.other = 0


@dataclass
class Malformed:
    count: int = 0
    first: str = ""
    """What was wrong with the first one (never the line's text)."""


@dataclass
class Interval:
    """One interval's aggregates, keyed by the group's tag values (in group_by order)."""

    groups: dict[tuple[str, ...], _Group] = field(default_factory=dict)
    malformed: dict[str, Malformed] = field(default_factory=dict)


class Aggregator:
    """Parses lines into per-group aggregates and turns them into metrics. No I/O."""

    def __init__(self, cfg: LogConfig):
        mapping = {**DEFAULT_FIELDS, **cfg.fields}
        self._numbers = tuple(
            key_and_getter(mapping[name]) for name in ("latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens")
        )
        self._status = field_getter(mapping["status"])
        ew = cfg.error_when
        ok = ew.status_not_in
        if ok is None and ew.http_status_gte is None:
            ok = DEFAULT_OK_STATUSES
        self._ok_statuses = frozenset(ok) if ok is not None else None
        self._http_gte = ew.http_status_gte
        self._http = field_getter(ew.http_status_field)
        self.group_by = tuple(cfg.group_by)
        self._group_getters = [field_getter(mapping.get(key, key)) for key in self.group_by]
        paths = [mapping.get(key, key) for key in self.group_by]
        self._group_keys = tuple(paths) if not any("." in p for p in paths) else None
        self._group_cache: dict[tuple, tuple[str, ...]] = {}
        """Raw string values -> group key, for groups within the cap (so bounded by them)."""
        self._max_groups = cfg.max_groups
        self._seen: list[set[str]] = [set() for _ in self.group_by]
        self.known: set[tuple[str, ...]] = set()
        """Groups seen since start: they get a `requests=0` row in intervals without traffic."""
        self.interval = Interval()

    def add_lines(self, path: str, lines: list[bytes], oversized: int = 0) -> None:
        # The hot loop (see bench/requestlog.py): plain keys are read with dict.get inline, and the
        # common number types are accepted without a call.
        decode = loads
        groups = self.interval.groups
        (lat_k, lat_f), (ttft_k, ttft_f), (prompt_k, prompt_f), (compl_k, compl_f) = self._numbers
        grouped = bool(self.group_by)
        gkeys, gcache = self._group_keys, self._group_cache
        is_error = self._is_error
        bad = oversized
        first = "line too long" if oversized else ""
        for line in lines:
            try:
                rec = decode(line.decode())
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, deep nesting
                if not line.strip():
                    continue
                bad += 1
                if not first:
                    first = f"invalid JSON ({getattr(exc, 'msg', None) or type(exc).__name__})"
                continue
            if type(rec) is not dict:
                bad += 1
                if not first:
                    first = "not a JSON object"
                continue
            # Values first: a line with an impossible one is malformed as a whole. The common case
            # (plain non-negative numbers or absent) is checked inline; the rest by checked_values.
            get = rec.get
            lat = get(lat_k) if lat_f is None else lat_f(rec)
            ttft = get(ttft_k) if ttft_f is None else ttft_f(rec)
            prompt = get(prompt_k) if prompt_f is None else prompt_f(rec)
            compl = get(compl_k) if compl_f is None else compl_f(rec)
            if not (
                (lat is None or (type(lat) is float and lat - lat == 0 or type(lat) is int) and lat >= 0)
                and (ttft is None or (type(ttft) is float and ttft - ttft == 0 or type(ttft) is int) and ttft >= 0)
                and (prompt is None or type(prompt) is int and 0 <= prompt <= MAX_TOKENS)
                and (compl is None or type(compl) is int and 0 <= compl <= MAX_TOKENS)
            ):
                (lat, ttft, prompt, compl), why = checked_values(lat, ttft, prompt, compl)
                if why:
                    bad += 1
                    first = first or why
                    continue
            if grouped:
                if gkeys is not None:
                    raw = tuple([get(k) for k in gkeys])
                    try:
                        key = gcache.get(raw)
                    except TypeError:  # a list or object value
                        key = None
                    if key is not None:
                        other = False
                    else:
                        key, other = self._group_key(rec)
                        if not other and len(gcache) < GROUP_CACHE and all(type(v) is str for v in raw):
                            gcache[raw] = key
                else:
                    key, other = self._group_key(rec)
            else:
                key, other = (), False
            g = groups.get(key)
            if g is None:
                g = groups[key] = _Group()
            g.requests += 1
            if other:
                g.other += 1
            if is_error(rec):
                g.errors += 1
            if lat is not None:
                g.latency.add(lat)
            if ttft is not None:
                g.ttft.add(ttft)
            if prompt is not None:
                g.prompt_tokens += prompt
            if compl is not None:
                g.completion_tokens += compl
        if bad:
            m = self.interval.malformed.setdefault(path, Malformed())
            m.count += bad
            m.first = m.first or first

    def _is_error(self, rec: dict) -> bool:
        if self._ok_statuses is not None:
            status = self._status(rec)
            if status is not None and (status if isinstance(status, str) else str(status)) not in self._ok_statuses:
                return True
        if self._http_gte is not None:
            code = number(self._http(rec))
            if code is not None and code >= self._http_gte:
                return True
        return False

    def _group_key(self, rec: dict) -> tuple[tuple[str, ...], bool]:
        values = []
        other = False
        for get, seen in zip(self._group_getters, self._seen):
            v = get(rec)
            if type(v) is not str or not v or len(v) > MAX_TAG_VALUE:
                v = tag_value(v)
            if v not in seen:
                if len(seen) < self._max_groups:
                    seen.add(v)
                else:
                    v = OTHER
                    other = True
            values.append(v)
        return tuple(values), other

    def take(self, tags: dict[str, str], elapsed_s: float | None, time_ns: int) -> list[Metric]:
        """This interval's metrics (no `*_per_s` when `elapsed_s` is None); starts the next interval."""
        interval, self.interval = self.interval, Interval()
        self.known.update(interval.groups)
        malformed = sum(m.count for m in interval.malformed.values())
        out: list[Metric] = []
        keys = sorted(self.known) if self.group_by else [()]
        for key in keys:
            fields = _fields(interval.groups.get(key), elapsed_s)
            if not self.group_by:
                fields["malformed_lines"] = malformed
            out.append(Metric(MEASUREMENT, {**tags, **dict(zip(self.group_by, key))}, fields, time_ns))
        if self.group_by:
            out.append(Metric(MEASUREMENT, dict(tags), {"malformed_lines": malformed}, time_ns))
        return out


def _fields(g: _Group | None, elapsed_s: float | None) -> dict[str, int | float]:
    if g is None:
        g = _Group()
    per_s = None if elapsed_s is None else 1.0 / elapsed_s if elapsed_s > 0 else 0.0
    fields: dict[str, int | float] = {
        "requests": g.requests,
        "errors": g.errors,
        **({} if per_s is None else {"requests_per_s": g.requests * per_s}),
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        **({} if per_s is None else {"completion_tokens_per_s": g.completion_tokens * per_s}),
    }
    if g.requests:
        fields["error_ratio"] = g.errors / g.requests
    summary = (
        ("latency_p50_ms", g.latency.quantile(0.50)),
        ("latency_p95_ms", g.latency.quantile(0.95)),
        ("latency_p99_ms", g.latency.quantile(0.99)),
        ("latency_mean_ms", g.latency.mean()),
        ("ttft_p95_ms", g.ttft.quantile(0.95)),
    )
    for key, value in summary:
        if value is not None:  # None: no value in the interval
            fields[key] = value
    if g.other:
        fields["grouped_as_other"] = g.other
    return fields


def state_file(state_dir: Path, cfg: LogConfig) -> Path:
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.name or Path(cfg.path).name).strip("_") or "log"
    digest = hashlib.sha1(f"{cfg.name}\0{cfg.path}".encode()).hexdigest()[:12]
    return state_dir / "logs" / f"{label[:60]}-{digest}.json"


class RequestLogSource:
    def __init__(self, cfg: LogConfig, state_dir: Path | None = None, clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.label = cfg.name or cfg.path
        self.name = f"logs:{self.label}"
        self._tags = {**cfg.tags, "log": self.label}
        self._tailer = Tailer(
            cfg.path,
            cfg.start_from,
            cfg.max_read_per_gather,
            state_file(state_dir, cfg) if state_dir is not None else None,
        )
        self._agg = Aggregator(cfg)
        self._clock = clock
        self._last = clock()
        self._caught_up = False
        """The last gather read every file to its end: the next interval's lines are all new traffic."""
        self._state = StateLog(log)
        self._opened_fail: set[str] = set()
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()
        """A gather cut off by the deadline leaves its thread running; the next one waits for it."""
        if self._tailer.state_error:  # an unreadable state file: said once, then we start fresh
            log.warning("logs %s: %s", self.label, self._tailer.state_error)
            self._tailer.state_error = None

    def _read_and_parse(self, time_limit_s: float) -> tuple[dict[str, Malformed], bool]:
        """Reads in chunks until the byte budget or the time limit is used up, so a backlog is worked
        off over several gathers instead of running past the deadline (whose results the agent drops).
        Also returns whether it read everything there was (no backlog left)."""
        with self._thread_lock:
            end = time.monotonic() + time_limit_s
            left = self.cfg.max_read_per_gather
            caught_up = False
            while left > 0:
                want = min(READ_CHUNK, left)
                batches = self._tailer.read(want)
                for batch in batches:
                    self._agg.add_lines(batch.path, batch.lines, batch.oversized)
                left -= self._tailer.bytes_read
                caught_up = self._tailer.bytes_read < want  # every file read to its end
                if not batches or time.monotonic() >= end:
                    break
            self._tailer.save_state()
            return dict(self._agg.interval.malformed), caught_up

    def _close(self) -> None:
        with self._thread_lock:
            self._tailer.close()

    async def gather(self, ctx: GatherContext) -> list[Metric]:
        async with self._lock:
            malformed, caught_up = await asyncio.to_thread(self._read_and_parse, ctx.deadline_s * TIME_SHARE)
            for path, m in malformed.items():
                where = path if path == self.label else f"{self.label}: {path}"
                log.warning("logs %s: skipped %d malformed line(s) (first: %s)", where, m.count, m.first)
            for path in self._opened_fail - set(self._tailer.open_errors):
                self._state.ok(("open", path), f"logs {self.label}: {path} readable again")
            for path, error in self._tailer.open_errors.items():
                self._state.fail(("open", path), f"logs {self.label}: cannot open {path}: {error}")
            self._opened_fail = set(self._tailer.open_errors)
            with self._thread_lock:
                notes, self._tailer.notes = self._tailer.notes, []
            for note in notes:
                log.warning("logs %s: %s", self.label, note)
            if self._tailer.state_error:
                self._state.fail("state", f"logs {self.label}: {self._tailer.state_error}")
            else:
                self._state.ok("state", f"logs {self.label}: state file OK again")
            now = self._clock()
            elapsed, self._last = now - self._last, now
            # Rates only over an interval that began with everything read: then all it read was written in it.
            # The first gather (the file's backlog from `from: beginning` or a saved position, or nothing read
            # before the first open at `from: end`) and one after a gather cut short by its budget count requests
            # but give no `*_per_s`: that backlog is not this interval's traffic.
            rated, self._caught_up = self._caught_up, caught_up
            with self._thread_lock:
                return self._agg.take(self._tags, elapsed if rated else None, ctx.time_ns)

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._close)


def build(config: Config, env: SourceEnv) -> list[Source]:
    logs: list[LogConfig] = list(getattr(config, "logs", None) or [])
    if not logs:
        return []
    if env.state_dir is None:
        log.info(
            "logs: agent.state_dir is not set; log positions are kept in memory only "
            "(after a restart each file starts again from `from`)"
        )
    return [RequestLogSource(cfg, env.state_dir) for cfg in logs]
