"""One probe against one target: send a small streaming request, time every chunk, classify failures.

The clock (monotonic `perf_counter_ns`) starts just before the request body is written to the
connection (httpcore's trace hook) and each read is stamped when it arrives, so TTFT is the server's answer time as seen on
the wire from this host; setting up a new connection (TCP, TLS) is reported apart as `connect_ms`.
A probe never retries: a retry would hide exactly what it is there to see.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from telegraf_llm_input.apis import PROBE_APIS
from telegraf_llm_input.apis.base import ProbeRequest
from telegraf_llm_input.config.probe import ProbeConfig
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.errors import ProbeError
from telegraf_llm_input.http import headers_for, remember_missing_sniffio, tls_verify, transport
from telegraf_llm_input.probe.measure import ProbeResult, StreamMeasure, failure, http_error_class

DEFAULT_PROMPT = "Count from 1 to 20, separated by spaces."
"""Short, deterministic at temperature 0, and answers in a few dozen tokens on any model."""

_TRACE_MARKS = (
    ("connect_tcp.started", "connect"),
    ("connect_tcp.complete", "connected"),
    ("start_tls.complete", "connected"),
    ("send_request_body.started", "sent"),
)


def join_url(base: str, path: str) -> str:
    """`http://h:8000` or `http://h:8000/v1` + `/v1/models` -> `http://h:8000/v1/models`."""
    base = base.rstrip("/")
    if base.endswith("/v1") and path.startswith("/v1/"):
        path = path[3:]
    return base + path


def make_client(target: TargetConfig) -> httpx.AsyncClient:
    """The probe's own small client, so a scrape on the shared pool never queues in front of a probe."""
    remember_missing_sniffio()
    timeout = httpx.Timeout(target.probe.timeout, connect=min(target.timeout, target.probe.timeout))
    return httpx.AsyncClient(
        headers=headers_for(target),
        verify=tls_verify(target),
        timeout=timeout,
        trust_env=False,
        limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
    )


def request_body(probe: ProbeConfig, model: str | None, keep_alive: float | None = None) -> dict[str, object]:
    """The streaming request of the probe's API (its table row builds it)."""
    prompt = probe.prompt if probe.prompt is not None else DEFAULT_PROMPT
    messages = probe.messages if probe.messages is not None else [{"role": "user", "content": prompt}]
    build = PROBE_APIS[probe.api].build
    assert build is not None  # every probe API has a body
    return build(ProbeRequest(prompt, messages, probe.max_tokens, probe.temperature, model, keep_alive))


@dataclass
class ProbeOutcome:
    result: ProbeResult
    model: str | None


class ProbeRunner:
    """Probes one target; keeps its HTTP client (keep-alive) and the discovered model between runs."""

    def __init__(
        self,
        target: TargetConfig,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
    ):
        self.target = target
        self.probe = target.probe
        self._client = client
        self._clock = clock
        self._model: str | None = self.probe.model

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(self.target)
        return self._client

    async def run_once(self) -> ProbeOutcome:
        """Never raises (except cancellation): every problem is a classified ProbeResult."""
        try:
            model = await self._discover()
        except httpx.HTTPError as exc:
            return ProbeOutcome(failure(*_classify(exc, None)), None)
        holder: list[StreamMeasure] = []
        start = self._clock()
        try:
            result = await asyncio.wait_for(self._stream(model, holder), self.probe.timeout)
        except asyncio.TimeoutError:
            result = self._finish(holder, start, "timeout", f"no complete response within {self.probe.timeout:g}s")
        except httpx.HTTPError as exc:
            status = holder[0].http_status if holder else None
            result = self._finish(holder, start, *_classify(exc, status))
        if not result.success and self.probe.model is None:
            self._model = None  # the model may have changed: discover again next time
        return ProbeOutcome(result, model)

    def _finish(self, holder: list[StreamMeasure], start: int, error: ProbeError, detail: str) -> ProbeResult:
        end = self._clock()
        if holder:
            return holder[0].finish(end, error, detail)
        return failure(error, detail, e2e_ms=(end - start) / 1e6)

    async def _stream(self, model: str | None, holder: list[StreamMeasure]) -> ProbeResult:
        api = self.probe.api
        marks: dict[str, int] = {}
        clock = self._clock

        async def trace(name: str, info: Any) -> None:
            # httpcore trace events: stamp connection set-up and the moment the request is on the wire.
            for suffix, key in _TRACE_MARKS:
                if name.endswith(suffix):
                    marks[key] = clock()

        request = self.client.build_request(
            PROBE_APIS[api].method,
            join_url(self.target.url, PROBE_APIS[api].paths[0]),
            json=request_body(self.probe, model),
            extensions={"trace": trace},
        )
        measure = StreamMeasure(api, clock())
        holder.append(measure)
        response = await self.client.send(request, stream=True)
        try:
            # The clock starts just before the request body is written: after our own request building,
            # connection set-up and header writing (not the server's time), yet never after the server
            # could have started, so TTFT is never under-reported. Connection set-up is connect_ms.
            measure.t0_ns = marks.get("sent", measure.t0_ns)
            if "connect" in marks and "connected" in marks:
                measure.connect_ms = (marks["connected"] - marks["connect"]) / 1e6
            measure.http_status = response.status_code
            if response.status_code != 200:
                return measure.finish(
                    self._clock(), http_error_class(response.status_code), f"HTTP {response.status_code}"
                )
            limit = self.target.max_body_bytes
            received = 0
            async for data in response.aiter_bytes():
                now = self._clock()
                received += len(data)
                if received > limit:
                    return measure.finish(now, "bad_stream", f"response larger than {limit} bytes")
                measure.receive(now, data)
            return measure.finish(self._clock())
        finally:
            await response.aclose()

    async def _discover(self) -> str | None:
        """The configured model, else the one the server lists (Ollama: a loaded one first)."""
        if self._model is not None:
            return self._model
        timeout = min(self.target.timeout, self.probe.timeout)
        if self.probe.api == "ollama":
            for path in ("/api/ps", "/api/tags"):
                names = _names(await self._get_json(path, timeout), "models", ("model", "name"))
                if names:
                    self._model = names[0]
                    break
        else:
            names = _names(await self._get_json("/v1/models", timeout), "data", ("id",))
            self._model = names[0] if names else None
        return self._model

    async def _get_json(self, path: str, timeout: float) -> Any:
        response = await self.client.get(join_url(self.target.url, path), timeout=timeout)
        if response.status_code != 200:
            return None  # no model list: send without a model, the server may have a default
        try:
            return response.json()
        except ValueError:
            return None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _names(doc: Any, key: str, name_keys: tuple[str, ...]) -> list[str]:
    items = doc.get(key) if isinstance(doc, dict) else None
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            name = next((item[k] for k in name_keys if isinstance(item.get(k), str) and item[k]), None)
            if name:
                out.append(name)
    return out


def _classify(exc: httpx.HTTPError, status: int | None) -> tuple[ProbeError, str]:
    """(error class, one-line detail) for a transport problem; no URL credentials, no bodies."""
    kind = type(exc).__name__
    what = transport(exc)
    if what in ("connect", "connect_timeout", "tls"):
        return "connect", f"cannot connect ({kind})"
    if what == "timeout":
        return "timeout", f"timed out ({kind})"
    if status is None:
        return "connect", f"no response ({kind})"
    return "bad_stream", f"stream broken after HTTP {status} ({kind})"
