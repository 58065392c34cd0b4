"""A Prometheus /metrics page with the latest value of every series (text format 0.0.4).

Naming: `<measurement>_<field>`, abbreviated unit suffixes turned into base units with the value
scaled (`gather_ms` -> `gather_seconds`, `_mb` -> `_bytes`), every character outside `[a-zA-Z0-9_]` replaced by `_`. Fields the
schema marks as counters are typed `counter` and get a `_total` suffix unless they already end in it
(`llm_agent_gathers` -> `llm_agent_gathers_total`), as Prometheus and promtool expect. Tags become
labels; bools are 0/1; strings are skipped. A series not updated for `expire` seconds leaves the page.

Written by hand rather than with prometheus_client: the page is a few dozen lines of text, and we
need per-series expiry and schema-driven types that its registry model does not give cheaply.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Mapping, Sequence

from telegraf_llm_input.log import get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.schema import lookup, prometheus_name, prometheus_unit
from telegraf_llm_input.sinks.config import parse_listen

log = get_logger("prometheus")

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def label_name(key: str) -> str:
    name = _INVALID.sub("_", key)
    if not name or name[:1].isdigit() or name.startswith("__"):
        name = "tag_" + name.lstrip("_")
    return name


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def sample_value(value) -> float | None:
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

    def update(self, metrics: Sequence[Metric], now: float) -> None:
        for m in metrics:
            labels = tuple(sorted((label_name(k), str(v)) for k, v in m.tags.items() if str(v) != ""))
            for field, raw in m.fields.items():
                value = sample_value(raw)
                if value is None:
                    continue
                spec = lookup(m.measurement, field)
                counter = spec is not None and spec.kind == "counter"
                name = prometheus_name(m.measurement, field)
                value *= prometheus_unit(field)[1]
                if name not in self._meta:
                    meaning = spec.meaning if spec else f"{m.measurement} field {field}"
                    if spec and spec.unit:
                        meaning += f" ({spec.unit})"
                    self._meta[name] = ("counter" if counter else "gauge", meaning)
                self._series[(name, labels)] = (value, now)

    def expire(self, now: float) -> None:
        old = [k for k, (_, t) in self._series.items() if now - t > self.expire_s]
        for k in old:
            del self._series[k]
        live = {name for name, _ in self._series}
        for name in [n for n in self._meta if n not in live]:
            del self._meta[name]

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
        self._scrapes = 0
        self._errors = 0

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            log.info("output %s: serving http://%s:%d%s", self.name, self.host, self.port, self.path)

    async def write(self, metrics: Sequence[Metric]) -> None:
        if self._server is None:
            try:
                await self.start()
            except OSError as exc:
                self._errors += 1
                raise OSError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.store.update(metrics, time.monotonic())

    def stats(self) -> Mapping[str, int]:
        return {}

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
            if method not in ("GET", "HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"method not allowed\n", "text/plain"
            elif target.split("?", 1)[0] != self.path:
                status, body, ctype = "404 Not Found", f"metrics are at {self.path}\n".encode(), "text/plain"
            else:
                self._scrapes += 1
                status, body, ctype = "200 OK", self.store.render(time.monotonic()).encode("utf-8"), CONTENT_TYPE
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode("latin-1"))
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
