"""Lines as Ollama and llama-server write them, formatted as their sources do.

- gin's default logger (gin/logger.go `defaultLogFormatter`, as Ollama uses it):
  `"[GIN] %v |%s %3d %s| %13v | %15s |%s %-7s %s %#v\\n%s"` with the time as `2006/01/02 - 15:04:05` (local),
  no colours off a terminal, a latency over a minute truncated to whole seconds; Go's `Duration.String()`.
- Ollama's runner start (llm/server.go, slog's text handler): `time=... level=INFO source=server.go:N
  msg="llama runner started in %0.2f seconds"`.
- Docker's json-file log (moby daemon/logger: the copier cuts output lines at 16 KiB, `bufSize`; jsonfilelog
  `marshalMessage` ends `log` with `\n` only on a line's last part): `docker_json_records`.
- llama-server's `print_timings` (tools/server/server-context.cpp, `SLT_INF`: `"slot %12.*s: id %2d | task %d | "`)
  and common/log.cpp's `--log-prefix --log-timestamps` prefix `"%d.%02d.%03d.%03d "` + `"I "`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _frac(ns, size) + unit
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    out = f"{h}h" if h else ""
    if h or m:
        out += f"{m}m"
    return sign + out + _frac(rest, 1_000_000_000) + "s"


def _frac(value: int, size: int) -> str:
    whole, part = divmod(value, size)
    if not part:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}." + f"{part:0{digits}d}".rstrip("0")


def gin_line(
    status: int, latency_ns: int, path: str, method: str = "POST", client: str = "127.0.0.1", when=None
) -> str:
    if latency_ns > 60_000_000_000:
        latency_ns -= latency_ns % 1_000_000_000
    stamp = time.strftime("%Y/%m/%d - %H:%M:%S", time.localtime(when if when is not None else time.time()))
    return "[GIN] %s |%s %3d %s| %13s | %15s |%s %-7s %s %s\n" % (  # noqa: UP031 - gin's own format string
        stamp,
        "",
        status,
        "",
        go_duration(latency_ns),
        client,
        "",
        method,
        "",
        json.dumps(path),
    )


DOCKER_PART = 16 * 1024
"""moby's copier `bufSize`: the longest `log` of one json-file record."""


def docker_json_records(line: str, stream: str = "stderr", when: str = "2026-08-13T10:15:40.123456789Z") -> str:
    """The json-file records Docker writes for one output line (`line` ends in `\n`): one per 16 KiB part."""
    body = line.rstrip("\n")
    parts = [body[i : i + DOCKER_PART] for i in range(0, len(body), DOCKER_PART)] or [""]
    parts[-1] += "\n"
    return "".join(json.dumps({"log": part, "stream": stream, "time": when}) + "\n" for part in parts)


def runner_started_line(seconds: float, when=None) -> str:
    t = when if when is not None else time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
    return f'time={stamp} level=INFO source=server.go:1274 msg="llama runner started in {seconds:0.2f} seconds"\n'


def print_timing_lines(
    slot: int, task: int, prompt_ms: float, prompt_n: int, eval_ms: float, eval_n: int, stamp_us: int | None = None
) -> list[str]:
    """The block llama-server writes for a finished request (with a `--log-timestamps` prefix when stamp_us)."""

    def slt(fmt: str, *args) -> str:
        prefix = ""
        if stamp_us is not None:
            t = stamp_us
            # common/log.cpp's and server-common.h's printf formats, as they are written there
            prefix = "%d.%02d.%03d.%03d I " % (t // 1000000 // 60, t // 1000000 % 60, t // 1000 % 1000, t % 1000)  # noqa: UP031
        return prefix + ("slot %12.12s: id %2d | task %d | " % ("print_timings", slot, task)) + (fmt % args)  # noqa: UP031

    def per_token(ms: float, n: int) -> tuple[float, float]:
        return (ms / n if n else float("inf")), (1e3 / ms * n if ms else float("inf"))

    return [
        slt(
            "prompt eval time = %10.2f ms / %5d tokens (%8.2f ms per token, %8.2f tokens per second)\n",
            prompt_ms,
            prompt_n,
            *per_token(prompt_ms, prompt_n),
        ),
        slt(
            "       eval time = %10.2f ms / %5d tokens (%8.2f ms per token, %8.2f tokens per second)\n",
            eval_ms,
            eval_n,
            *per_token(eval_ms, eval_n),
        ),
        slt("      total time = %10.2f ms / %5d tokens\n", prompt_ms + eval_ms, prompt_n + eval_n),
        slt("   graphs reused = %10d\n", 3),
    ]


@dataclass
class Logged:
    """What the fake wrote: one request (path, status, latency) or one load."""

    path: str = ""
    status: int = 0
    latency_ns: int = 0
    load_s: float | None = None


@dataclass
class OllamaLog:
    """An Ollama server log being written: access lines and runner starts, with the fake's own record."""

    path: Path
    record: list[Logged] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    """The fake server answers on several threads: one line and its record at a time."""

    def access(self, status: int, latency_ns: int, path: str, method: str = "POST", when=None) -> None:
        self._write(gin_line(status, latency_ns, path, method, when=when), Logged(path, status, latency_ns))

    def load(self, seconds: float) -> None:
        self._write(runner_started_line(seconds), Logged(load_s=seconds))

    def _write(self, text: str, what: Logged) -> None:
        with self.lock:
            with open(self.path, "a") as f:
                f.write(text)
            self.record.append(what)


class LoggingOllama:
    """An Ollama fake that writes its server log as Ollama does: a gin access line for every request it answers
    (the agent's `/api/ps` and `/api/version` too), a runner-start line for each model load (`load()`), with the
    fake's own record of what it wrote (`log.record`). `/api/ps` answers `models` (with `expires_at`)."""

    def __init__(self, log: OllamaLog, models: list[dict], latencies_ms: list[float] | None = None):
        from tests.fakes.server import FakeServer, Reply

        self.log = log
        self.models = models
        self._latencies = list(latencies_ms or [120.0, 80.5, 1500.25, 42.0, 9.75, 300.0])
        self._n = 0

        def logged(path: str, status: int, body, method: str = "GET") -> Reply:
            def render():
                latency_ms = 0.2 if method == "GET" else self._next_latency()
                query = self.server.requests[-1].query  # gin logs the path with its query
                self.log.access(status, int(latency_ms * 1e6), f"{path}?{query}" if query else path, method)
                return json.dumps(body() if callable(body) else body)

            return Reply(render, status=status, content_type="application/json; charset=utf-8")

        self.server = FakeServer(
            {
                "/api/version": logged("/api/version", 200, {"version": "0.6.5"}),
                "/api/ps": logged("/api/ps", 200, lambda: {"models": self.models}),
                "/api/tags": logged("/api/tags", 200, {"models": []}),
                "/api/chat": logged("/api/chat", 200, {"done": True}, "POST"),
                "/api/embed": logged("/api/embed", 200, {"embeddings": [[0.1]]}, "POST"),
                "/api/generate": logged("/api/generate", 500, {"error": "llama runner process has terminated"}, "POST"),
                "/api/show": logged("/api/show", 404, {"error": "model not found"}, "POST"),
            }
        )
        self.url = self.server.url

    def _next_latency(self) -> float:
        self._n += 1
        return self._latencies[(self._n - 1) % len(self._latencies)]

    def load(self, seconds: float) -> None:
        self.log.load(seconds)

    def __enter__(self) -> LoggingOllama:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
