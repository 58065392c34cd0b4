"""Ollama's server log: gin's access line per finished request, slog's line per model load.

Access line (gin's default `LoggerWithFormatter`, written when the request ends, local time):
    [GIN] 2026/08/13 - 10:15:40 | 200 |  47.44538475s |       127.0.0.1 | POST     "/api/chat"
(`%3d` status, `%13v` Go duration — `850ns`, `512.3µs`, `4.2ms`, `47.4s`, `1m2.5s`, truncated to whole seconds
past a minute —, `%15s` client, `%-7s` method, `%#v` quoted path and query). A model load (llm/server.go):
    time=2026-08-13T10:15:38.412Z level=INFO source=server.go:1274 msg="llama runner started in 2.51 seconds"
Only inference paths are requests (`PATHS`): the agent's own scrapes (`/api/ps`, `/api/version`, `/api/tags`)
and model management (pull, show, create...) never count, nor a probe's request (its query has `PROBE_MARK`).
"""

from __future__ import annotations

import re
import time

from telegraf_llm_input.apis import ollama as ollama_api, openai as openai_api
from telegraf_llm_input.apis.ollama import PROBE_MARK
from telegraf_llm_input.serverlogs.base import EMBED, Event, ModelLoad, Request, plain

TYPE = "ollama"
_PCT = ("p50", "p90", "p95", "p99", "mean")
FIELDS = (
    "requests_per_s",
    "error_ratio",
    "client_error_ratio",
    *(f"e2e_{p}_ms" for p in _PCT),
    "model_loads_per_s",
    "model_load_seconds",
)
"""llm_server fields its log gives (docs/metrics.md)."""

SERVED = (*ollama_api.APIS, *openai_api.APIS)
"""What Ollama answers (server/routes.go): its native API, and the OpenAI-compatible one under `/v1/`."""
PATHS: dict[str, str] = {
    **{path: api.kind for api in SERVED for path in api.paths if path.startswith(("/api/", "/v1/"))},
    "/api/embeddings": EMBED,  # the legacy embeddings route: only counted, nothing reads its answer (not in apis/)
}
"""Inference paths (POST) and their API class; every other path is not user inference traffic."""

ACCESS = re.compile(
    r"\[GIN\] (?P<time>\d{4}/\d\d/\d\d - \d\d:\d\d:\d\d) \|\s*(?P<status>\d{3})\s*\|\s*(?P<latency>\S+)\s*\|"
    r"\s*(?P<client>\S*)\s*\|\s*(?P<method>[A-Z]+)\s+\"(?P<path>(?:[^\"\\]|\\.)*)\""
)
LOAD = re.compile(r"level=INFO .*msg=\"?llama runner started in (?P<seconds>\d+(?:\.\d+)?) seconds")

_UNITS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|μs|ms|s|m|h)")
_WHOLE_DURATION = re.compile(r"(?:\d+(?:\.\d*)?(?:ns|us|µs|μs|ms|s|m|h))+|0")


def go_duration_ms(text: str) -> float | None:
    """Milliseconds of a Go `time.Duration` string (`1h2m3.5s`, `512.3µs`, `0s`); None when it is not one."""
    if not _WHOLE_DURATION.fullmatch(text):
        return None
    return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))


def _local_time(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(text, "%Y/%m/%d - %H:%M:%S"))
    except (ValueError, OverflowError):
        return None


class Parser:
    """Ollama's lines -> events. Each event is on one line: nothing is waited for."""

    def carry(self) -> list[object]:
        return []

    def resume(self, carried: object) -> None:
        pass

    def feed(self, line: str) -> list[Event]:
        if "[GIN]" in line:
            m = ACCESS.search(plain(line))
            if m is None or m["method"] != "POST":
                return []
            path, _, query = m["path"].partition("?")
            api = PATHS.get(path)
            if api is None:
                return []
            return [
                Request(
                    api=api,
                    status=int(m["status"]),
                    e2e_ms=go_duration_ms(m["latency"]),
                    path=path,
                    logged_at=_local_time(m["time"]),
                    probe=PROBE_MARK in query.split("&"),
                )
            ]
        if "llama runner started" in line:
            m = LOAD.search(line)
            if m is not None:
                return [ModelLoad(float(m["seconds"]))]
        return []
