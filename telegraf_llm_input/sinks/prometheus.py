"""A Prometheus /metrics page with the latest value of every series (text format 0.0.4).

Naming: `<measurement>_<field>`, abbreviated unit suffixes turned into base units with the value
scaled (`gather_ms` -> `gather_seconds`, `_mb` -> `_bytes`), every character outside `[a-zA-Z0-9_]` replaced by `_`. Fields the
schema marks as counters are typed `counter` and get a `_total` suffix unless they already end in it
(`llm_agent_gathers` -> `llm_agent_gathers_total`), as Prometheus and promtool expect. Tags become
labels; bools are 0/1; strings are skipped. A series not updated for `expire` seconds leaves the page.

Every page passes `promtool check metrics`, whatever the input (a `type: prometheus` target's own names
included): a gauge whose name ends in a suffix Prometheus reserves (`_total`, `_count`, `_sum`, `_bucket`)
gets `_value` appended; camelCase becomes snake_case and a metric type inside a name (`_gauge`) is removed;
the labels `le` and `quantile` become `tag_le`, `tag_quantile`. A name still not valid (an abbreviated or
non-base unit inside it: `_ms_`, `_minutes`), or one a different field already took (`scrape_ms` and
`scrape_seconds` both become `..._scrape_seconds`), is dropped with one warning.

Written by hand rather than with prometheus_client: the page is a few dozen lines of text, and we
need per-series expiry and schema-driven types that its registry model does not give cheaply.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Coroutine, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import h11

from telegraf_llm_input import h11io
from telegraf_llm_input.config.outputs import PrometheusOutput, parse_listen
from telegraf_llm_input.log import get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.schema import lookup, prometheus_name, prometheus_unit

log = get_logger("prometheus")

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
IDLE_S = 30.0
"""A scraper's kept connection is closed after this long without a request (Prometheus reconnects)."""
MAX_REQUEST_BODY = 8192
"""A scrape has no body; a bigger one gets 413 and the connection closes (the head is bounded by h11io)."""


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_RESERVED_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
_TYPES_IN_NAME = ("counter", "gauge", "histogram", "summary", "untyped", "gauge_histogram")
# promtool (client_golang promlint) rejects these as parts of a name: abbreviated units, non-base units,
# and base units with an SI/binary prefix.
_ABBREVIATED = {"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"}
_NON_BASE = {
    "minutes",
    "hours",
    "days",
    "weeks",
    "kelvins",
    "fahrenheit",
    "rankine",
    "inches",
    "yards",
    "miles",
    "bits",
    "calories",
    "pounds",
    "ounces",
}
_BASE = ("amperes", "bytes", "celsius", "grams", "joules", "kelvin", "meters", "metres", "seconds", "volts")
_PREFIXES = (
    "pico",
    "nano",
    "micro",
    "milli",
    "centi",
    "deci",
    "deca",
    "hecto",
    "kilo",
    "kibi",
    "mega",
    "mibi",
    "giga",
    "gibi",
    "tera",
    "tebi",
    "peta",
    "pebi",
)
_PREFIXED = {p + b for p in _PREFIXES for b in _BASE}


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower() if _CAMEL.search(name) else name


@lru_cache(maxsize=4096)
def label_name(key: str) -> str:
    name = _snake(_INVALID.sub("_", key))
    if not name or name[:1].isdigit() or name.startswith("__") or name in ("le", "quantile"):
        name = "tag_" + name.lstrip("_")
    return name


class Exposed(NamedTuple):
    name: str | None
    """None: no valid name (then `problem` says why)."""
    counter: bool
    factor: float
    problem: str = ""
    ours: bool = False
    """A field the schema names: its series name always belongs to it."""


@lru_cache(maxsize=16384)
def exposed(measurement: str, field: str) -> Exposed:
    """The series name of one field, repaired until promtool accepts it, or why it cannot be."""
    spec = lookup(measurement, field)
    counter = spec is not None and spec.kind == "counter"
    factor = prometheus_unit(field)[1]
    name = prometheus_name(measurement, field)
    if spec is not None and spec.name != "*":
        return Exposed(name, counter, factor, ours=True)  # the schema's own names are checked by the tests
    name = _snake(name)
    parts = [p for p in name.split("_") if p.lower() not in _TYPES_IN_NAME]
    name = "_".join(parts) if any(parts) else name
    if name.endswith(_RESERVED_SUFFIXES):  # again: snake_case or a removed type may have made one
        name += "_value"
    bad = [p for p in name.lower().split("_") if p in _ABBREVIATED or p in _NON_BASE or p in _PREFIXED]
    if bad:
        return Exposed(None, False, factor, f"unit `{bad[0]}` in the name")
    return Exposed(name, False, factor)


def help_unit(field: str, unit: str) -> str:
    """The unit a HELP line names: the schema's, or the base unit the value was scaled to (`gather_ms`: seconds)."""
    renamed, factor = prometheus_unit(field)
    if factor != 1.0:
        for suffix, base in (("_bytes_per_second", "bytes/s"), ("_seconds", "seconds"), ("_bytes", "bytes")):
            if renamed.endswith(suffix):
                return base
    return unit


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def sample_value(value: object) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return None


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class SeriesStore:
    """Latest value per (name, labels), with type, help and last-update time; pure, no I/O."""

    def __init__(self, expire_s: float):
        self.expire_s = expire_s
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float]] = {}
        self._meta: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self._owner: dict[str, tuple[str, str]] = {}  # name -> the (measurement, field) that has it
        self._warned: set[tuple[str, str]] = set()

    def update(self, metrics: Sequence[Metric], now: float) -> None:
        for m in metrics:
            labels: dict[str, str] = {}
            for k in sorted(m.tags):  # two tags with one label name: the first (sorted) keeps it
                v = str(m.tags[k])
                if v != "":
                    labels.setdefault(label_name(k), v)
            key = tuple(sorted(labels.items()))
            for field, raw in m.fields.items():
                value = sample_value(raw)
                if value is None:
                    continue
                ex = exposed(m.measurement, field)
                name = ex.name
                if name is None:
                    self._drop(m.measurement, field, ex.problem)
                    continue
                owner = self._owner.setdefault(name, (m.measurement, field))
                if owner != (m.measurement, field):
                    if not ex.ours or exposed(*owner).ours:
                        self._drop(m.measurement, field, f"its name {name} is taken by {owner[0]} {owner[1]}")
                        continue
                    self._take(name, (m.measurement, field))  # a schema field's name is always its own
                if name not in self._meta:
                    spec = lookup(m.measurement, field)
                    meaning = spec.meaning if spec and spec.name != "*" else f"{m.measurement} field {field}"
                    if spec and spec.unit:
                        meaning += f" ({help_unit(field, spec.unit)})"
                    self._meta[name] = ("counter" if ex.counter else "gauge", meaning)
                self._series[(name, key)] = (value * ex.factor, now)

    def _take(self, name: str, owner: tuple[str, str]) -> None:
        old = self._owner[name]
        self._drop(*old, f"its name {name} belongs to {owner[0]} {owner[1]}")
        self._owner[name] = owner
        self._meta.pop(name, None)
        for key in [k for k in self._series if k[0] == name]:
            del self._series[key]

    def _drop(self, measurement: str, field: str, why: str) -> None:
        if (measurement, field) not in self._warned and len(self._warned) < 1024:
            self._warned.add((measurement, field))
            log.warning("prometheus output: %s field %s not exposed: %s", measurement, field, why)

    def expire(self, now: float) -> None:
        old = [k for k, (_, t) in self._series.items() if now - t > self.expire_s]
        for k in old:
            del self._series[k]
        live = {name for name, _ in self._series}
        for name in [n for n in self._meta if n not in live]:
            del self._meta[name]
            self._owner.pop(name, None)

    def render(self, now: float) -> str:
        self.expire(now)
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = {}
        for (name, labels), (value, _) in self._series.items():
            by_name.setdefault(name, []).append((labels, value))
        out: list[str] = []
        for name in sorted(by_name):
            kind, help_text = self._meta[name]
            out.append(f"# HELP {name} {escape_help(help_text)}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(by_name[name]):
                if labels:
                    body = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
                    out.append(f"{name}{{{body}}} {format_value(value)}")
                else:
                    out.append(f"{name} {format_value(value)}")
        return "\n".join(out) + "\n" if out else ""

    def __len__(self) -> int:
        return len(self._series)


class PrometheusSink:
    def __init__(self, name: str, listen: str, path: str, expire_s: float):
        self.name = name
        self.host, self.port = parse_listen(listen)
        self.path = path
        self.store = SeriesStore(expire_s)
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            log.info("output %s: serving http://%s:%d%s", self.name, self.host, self.port, self.path)

    async def write(self, metrics: Sequence[Metric]) -> None:
        waiting = self.write_nowait(metrics)
        if waiting is not None:
            await waiting

    def write_nowait(self, metrics: Sequence[Metric]) -> Coroutine[Any, Any, None] | None:
        """`write` without a coroutine once the page is served (every gather but the first)."""
        if self._server is None:
            return self._first_write(metrics)
        self.store.update(metrics, time.monotonic())
        return None

    async def _first_write(self, metrics: Sequence[Metric]) -> None:
        try:
            await self.start()
        except OSError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.store.update(metrics, time.monotonic())

    def stats(self) -> Mapping[str, int]:
        """No counters of its own (the Sink contract asks for the method)."""
        return {}

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await h11io.serve(reader, writer, self._respond, idle_s=IDLE_S, max_body=MAX_REQUEST_BODY)

    def _respond(self, request: h11.Request) -> h11io.Reply:
        """The page for GET/HEAD of `path` (any query), 404 elsewhere, 405 for other methods."""
        if request.method not in (b"GET", b"HEAD"):
            return h11io.Reply(405, [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")], b"method not allowed\n")
        if request.target.split(b"?", 1)[0].decode("latin-1") != self.path:
            return h11io.Reply(404, [("Content-Type", "text/plain")], f"metrics are at {self.path}\n".encode())
        body = self.store.render(time.monotonic()).encode("utf-8", "replace")  # a lone surrogate: `?`
        return h11io.Reply(200, [("Content-Type", CONTENT_TYPE)], body)


def build_prometheus(cfg: PrometheusOutput, name: str, state_dir: str | None) -> PrometheusSink:
    """The `prometheus` output (`state_dir` unused: the page is rebuilt from the next gathers)."""
    return PrometheusSink(name, cfg.listen, cfg.path, cfg.expire)
