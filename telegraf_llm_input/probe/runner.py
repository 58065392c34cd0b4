"""One probe against one target: send a small streaming request, time every chunk, classify failures.

The clock (monotonic `perf_counter_ns`) starts just before the request body is written to the
connection (httpcore's trace hook) and each read is stamped when it arrives, so TTFT is the server's answer time as seen on
the wire from this host; setting up a new connection (TCP, TLS) is reported apart as `connect_ms`.
A probe never retries: a retry would hide exactly what it is there to see.

On Ollama and LM Studio a request loads the model it names, and on Ollama it restarts the unload countdown
with the duration the runner stored: there each run first asks what is loaded and probes only that
(`probe/choose.py`), and on Ollama only right after a user's request restarted that countdown, without a
`keep_alive` (`probe/watch.py`; `look()` between runs). On Ollama the probe speaks the native API whatever `api`
says (its answer has the server's own timings), with PROBE_MARK in its query: every agent (and `top`) reading
Ollama's log leaves it out of user traffic (the ledger tells only the log reader of this process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, TypeVar

import httpx

from telegraf_llm_input.apis import PROBE_APIS
from telegraf_llm_input.apis.base import ProbeRequest
from telegraf_llm_input.apis.ollama import PROBE_MARK
from telegraf_llm_input.config.probe import ProbeConfig
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.errors import ProbeError
from telegraf_llm_input.http import headers_for, remember_missing_sniffio, tls_verify, transport
from telegraf_llm_input.probe.choose import Loaded, Plan, Skip, generates, lmstudio_loaded, ollama_loaded, plan
from telegraf_llm_input.probe.measure import ProbeResult, StreamMeasure, failure, http_error_class
from telegraf_llm_input.probe.watch import Watch, forever
from telegraf_llm_input.probenames import ProbeApi

DEFAULT_PROMPT = "Count from 1 to 20, separated by spaces."
"""Short, deterministic at temperature 0, and answers in a few dozen tokens on any model."""

ServerKind = Literal["ollama", "lmstudio", "other"]
"""What the probe must know of a server: Ollama and LM Studio load what a request names; others hold theirs."""
_KINDS: dict[str, ServerKind] = {"ollama": "ollama", "lmstudio": "lmstudio"}
ReadLoaded = Callable[[object, datetime], "list[Loaded] | None"]
_MODEL_LISTS: dict[ServerKind, tuple[str, ReadLoaded]] = {
    "ollama": ("/api/ps", ollama_loaded),
    "lmstudio": ("/api/v0/models", lmstudio_loaded),
}
"""Where each says which models it holds now, and how to read that."""
T = TypeVar("T")


class Ledger(Protocol):
    """Where the probe says what it sent (a server-log source leaves those requests out of user traffic)."""

    async def track(self, target: str, path: str, run: Awaitable[T]) -> T: ...


_TRACE_MARKS = (
    ("connect_tcp.started", "connect"),
    ("connect_tcp.complete", "connected"),
    ("start_tls.complete", "connected"),
    ("send_request_body.started", "sent"),
)


def join_url(base: str, path: str) -> str:
    """`http://h:8000` or `http://h:8000/v1` + `/v1/models` -> `http://h:8000/v1/models`; a server's own routes
    (`/api/ps`) sit at its root, also when the target's URL ends in `/v1`."""
    base = base.rstrip("/")
    if base.endswith("/v1"):
        if path.startswith("/v1/"):
            path = path[3:]
        else:
            base = base[:-3]
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


def request_body(probe: ProbeConfig, model: str | None, api: ProbeApi | None = None) -> dict[str, object]:
    """The streaming request of the probe's API (or `api`: on Ollama the native one; never a `keep_alive`)."""
    prompt = probe.prompt if probe.prompt is not None else DEFAULT_PROMPT
    messages = probe.messages if probe.messages is not None else [{"role": "user", "content": prompt}]
    build = PROBE_APIS[api or probe.api].build
    assert build is not None  # every probe API has a body
    return build(ProbeRequest(prompt, messages, probe.max_tokens, probe.temperature, model))


@dataclass
class ProbeOutcome:
    result: ProbeResult
    model: str | None
    api: ProbeApi
    """The API the probe spoke (on Ollama the native one, whatever was configured)."""
    server_type: str
    """The `server_type` tag for a `type: auto` target: what the probe found, else what its API implies."""


class ProbeRunner:
    """Probes one target; keeps its HTTP client (keep-alive), the model and what the server is between runs."""

    def __init__(
        self,
        target: TargetConfig,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        ledger: Ledger | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self.target = target
        self.probe = target.probe
        self._client = client
        self._clock = clock
        self._ledger = ledger
        self._now = now
        self._model: str | None = self.probe.model
        self._kind: ServerKind | None = None if target.type == "auto" else _KINDS.get(target.type, "other")
        self._just_read: list[Loaded] | None = None
        """The model list read a moment ago to find what the server is (not asked for twice in one run)."""
        self._watch = Watch()
        """Ollama: each model's countdown at the previous look, to see a user's request end (`look()`)."""
        self._generates: dict[str, bool] = {}
        """Ollama: whether each loaded model can answer a chat (`/api/show` once per model; nothing loaded)."""

    @property
    def watching(self) -> bool:
        """Ollama, model not configured: the probe looks at `/api/ps` every `probe.ps_every` (`look()`) and sends
        only right after a look found a user's request ended."""
        return self._kind == "ollama" and self.probe.model is None

    @property
    def first_look_due(self) -> bool:
        """Ollama (or a server not known yet), model not configured, no look taken: a run now would have no look to
        compare with (every model would look idle), so the source takes this look first and runs at the next."""
        return self.probe.model is None and self._kind in (None, "ollama") and self._watch.previous_at is None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(self.target)
        return self._client

    async def run_once(self) -> ProbeOutcome:
        """Never raises (except cancellation): every problem is a classified ProbeResult, a skip says why."""
        api = self.probe.api
        try:
            kind = await self._server_kind()
            api = "ollama" if kind == "ollama" else api
            choice = await self._choose(kind)
        except httpx.HTTPError as exc:
            return ProbeOutcome(failure(*_classify(exc, None)), None, api, self._server_type(api))
        if isinstance(choice, Skip):
            result = ProbeResult(success=False, skipped=choice.reason)
            return ProbeOutcome(result, choice.model, api, self._server_type(api))
        holder: list[StreamMeasure] = []
        start = self._clock()
        run = self._stream(api, choice, holder)
        if self._ledger is not None:
            run = self._ledger.track(self.target.display_name, PROBE_APIS[api].paths[0], run)
        try:
            result = await asyncio.wait_for(run, self.probe.timeout)
        except asyncio.TimeoutError:
            result = self._finish(holder, start, "timeout", f"no complete response within {self.probe.timeout:g}s")
        except httpx.HTTPError as exc:
            status = holder[0].http_status if holder else None
            result = self._finish(holder, start, *_classify(exc, status))
        finally:
            self._watch.probed(self._now().timestamp())  # the countdown it restarts is not a user's
        if not result.success:  # the model or the server may have changed: look again next time
            self._model = self.probe.model if kind == "other" else self._model
            self._kind = None if self.target.type == "auto" else kind
        return ProbeOutcome(result, choice.model, api, self._server_type(api))

    def _server_type(self, api: ProbeApi) -> str:
        return self._kind if self._kind in ("ollama", "lmstudio") else PROBE_APIS[api].server_type

    def _finish(self, holder: list[StreamMeasure], start: int, error: ProbeError, detail: str) -> ProbeResult:
        end = self._clock()
        if holder:
            return holder[0].finish(end, error, detail)
        return failure(error, detail, e2e_ms=(end - start) / 1e6)

    async def _stream(self, api: ProbeApi, choice: Plan, holder: list[StreamMeasure]) -> ProbeResult:
        marks: dict[str, int] = {}
        clock = self._clock

        async def trace(name: str, info: Any) -> None:
            # httpcore trace events: stamp connection set-up and the moment the request is on the wire.
            for suffix, key in _TRACE_MARKS:
                if name.endswith(suffix):
                    marks[key] = clock()

        url = join_url(self.target.url, PROBE_APIS[api].paths[0])
        request = self.client.build_request(
            PROBE_APIS[api].method,
            f"{url}?{PROBE_MARK}" if api == "ollama" else url,
            json=request_body(self.probe, choice.model, api),
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

    async def _server_kind(self) -> ServerKind:
        """Ollama or LM Studio when the target is (`type:`, or for `auto` what answers its model list), else other."""
        if self._kind is None:
            self._kind = "other"
            for kind in _MODEL_LISTS:
                loaded = await self._read_loaded(kind)
                if loaded is not None:
                    self._kind, self._just_read = kind, loaded
                    break
        return self._kind

    async def look(self) -> None:
        """One look at Ollama's `/api/ps` between runs (never raises but for cancellation): the next run judges
        what moved since this look, so a run probes at most `ps_every` after a user's request ended."""
        try:
            known = self._kind is not None
            if await self._server_kind() == "ollama" and known:  # (not known: that read was the look)
                await self._read_loaded("ollama")
            self._just_read = None  # the next run reads what is loaded then
        except httpx.HTTPError:
            pass  # the next run reads it again and reports what fails

    async def _read_loaded(self, kind: ServerKind) -> list[Loaded] | None:
        path, read = _MODEL_LISTS[kind]
        now = self._now()
        loaded = read(await self._get_json(path), now)
        if kind == "ollama" and loaded is not None:
            self._watch.see({m.name: m.until_s for m in loaded}, now.timestamp())
        return loaded

    async def _choose(self, kind: ServerKind) -> Plan | Skip:
        """The model for this run, from what the server holds now (on Ollama: what its user is using now)."""
        if kind == "other":
            if self._model is None:
                names = _names(await self._get_json("/v1/models"), "data", ("id",))
                self._model = names[0] if names else None
            return Plan(self._model)
        loaded, self._just_read = self._just_read, None
        if loaded is None:
            loaded = await self._read_loaded(kind)
        if loaded is None:
            return Plan(self.probe.model) if self.probe.model else Skip("no_model_list")
        ollama = kind == "ollama"
        if ollama and self.probe.model is None:
            await self._learn_capabilities(loaded)
        choice = plan(
            loaded,
            self.probe.model,
            self._model,
            self._in_use if ollama else None,
            (lambda m: self._generates.get(m.name, True)) if ollama else None,
        )
        self._model = choice.model if isinstance(choice, Plan) else self._model
        return choice

    async def _learn_capabilities(self, loaded: list[Loaded]) -> None:
        """Ask `/api/show` about each loaded model not asked about yet (it reads the model's files: nothing is
        loaded and no countdown moves); forget models no longer loaded."""
        names = {m.name for m in loaded}
        self._generates = {n: g for n, g in self._generates.items() if n in names}
        for name in names - self._generates.keys():
            timeout = min(self.target.timeout, self.probe.timeout)
            response = await self.client.post(
                join_url(self.target.url, "/api/show"), json={"model": name}, timeout=timeout
            )
            try:
                self._generates[name] = generates(response.json() if response.status_code == 200 else None)
            except ValueError:
                self._generates[name] = True

    def _in_use(self, model: Loaded) -> bool:
        """Ollama: a probe now moves this model's countdown by seconds at most (or not at all: kept forever)."""
        return model.name in self._watch.fresh or forever(model.until_s, self._now().timestamp())

    async def _get_json(self, path: str) -> Any:
        timeout = min(self.target.timeout, self.probe.timeout)
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
