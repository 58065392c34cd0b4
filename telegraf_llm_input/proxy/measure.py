"""What the proxy measures of each forwarded request, and the page's metric families.

The answer is read as it passes by the shared stream reader (`apis/`: one description per API, the probe
reads its streams with the same), which keeps counts and flags, never text. Of the request body only the first
BODY_SNIFF bytes are held, for its `model`; nothing of a prompt or an answer is logged or exposed.

Meaning as vLLM's (a dashboard reads them the same): TTFT from the request's arrival to the first generated
token (content, reasoning or a tool call; never a role-only chunk or the first byte), inter-token latency
between generated chunks, time per output token = (last - first token) / (tokens - 1), e2e from arrival to
the answer's last byte. Time to first answer: for reasoning models, the first token after the thinking part.
Tokens are the server's own counts (OpenAI `usage`, Ollama's final `prompt_eval_count`/`eval_count`), else
the generated chunks counted (label `counted="chunks"`). TTFT, TTFA, ITL and TPOT are only taken of streamed
answers: a non-streamed one reaches the client at once.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from dataclasses import dataclass

from telegraf_llm_input.apis import classify, request_info
from telegraf_llm_input.apis.base import Api, Event
from telegraf_llm_input.apis.reader import StreamReader
from telegraf_llm_input.apis.timeline import Timeline
from telegraf_llm_input.proxy import headers as hdr
from telegraf_llm_input.proxy.names import CLIENT_ERROR, OUTCOMES_FAILED, PREFIX
from telegraf_llm_input.proxy.registry import Counter, Gauge, Histogram, Registry

BODY_SNIFF = 256 * 1024
"""Request-body bytes kept to read `model`; a bigger body (images) is searched for it in this prefix."""
RECENT = 256
"""Per-request records kept (numbers only): what tests compare with the client's own view."""
UNKNOWN = "unknown"
STREAMING = frozenset({b"text/event-stream", b"application/x-ndjson"})
_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,256})"')

# vLLM's bucket bounds, with finer ones below 10 ms (a local server on loopback answers that fast)
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2,
               0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
               60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
TOKEN_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5)


@dataclass
class Measured:
    """One finished request as measured: numbers only. Seconds from its arrival; None: not seen."""

    api: str
    model: str
    outcome: str = ""
    status: int | None = None
    streamed: bool = False
    ttft_s: float | None = None
    ttfa_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    counted: str | None = None
    """`server` (the server's count) or `chunks` (generated chunks counted)."""
    load_s: float | None = None
    """Ollama's `load_duration`."""
    chunks: int = 0
    """Generated chunks seen."""
    arrived_ns: int = 0
    """When the request's head had arrived (monotonic ns, the machine's clock): what a client's own stamps on
    the same clock are compared with (tests, bench)."""


class Meters:
    """Every family on the page, and the factory of per-request `Exchange`s."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        ma, p = ("model", "api"), PREFIX
        self.in_flight = r.add(Gauge(p + "requests_in_flight", "Model requests being answered now.", ma))
        self.requests = r.add(
            Counter(
                p + "requests_total",
                "Generation requests finished, by outcome (ok, cancelled by the client, http_4xx, http_5xx, "
                "stream_error, upstream_*) and HTTP status sent to the client.",
                (*ma, "outcome", "code"),
            )
        )

        def per_model(name: str, help: str, bounds: tuple[float, ...]) -> Histogram:
            return r.add(Histogram(p + name, help, ma, bounds))

        self.ttft = per_model(
            "time_to_first_token_seconds", "Arrival to the first generated token (streams).", TTFT_BUCKETS
        )
        self.ttfa = per_model(
            "time_to_first_answer_seconds",
            "Arrival to the first token of the answer after any thinking (streams).",
            TTFT_BUCKETS,
        )
        self.itl = per_model("inter_token_latency_seconds", "Gap between generated chunks (streams).", ITL_BUCKETS)
        self.tpot = per_model(
            "request_time_per_output_token_seconds",
            "Per request: (last - first token) / (tokens - 1) (streams).",
            ITL_BUCKETS,
        )
        self.e2e = per_model("e2e_request_latency_seconds", "Arrival to the last byte of the answer.", E2E_BUCKETS)
        self.load = per_model(
            "load_duration_seconds", "Ollama's load_duration per request (a cold start).", E2E_BUCKETS
        )
        self.prompt_hist = per_model("request_prompt_tokens", "Prompt tokens per finished request.", TOKEN_BUCKETS)
        self.gen_hist = per_model("request_generation_tokens", "Generated tokens per finished request.", TOKEN_BUCKETS)
        counted = (*ma, "counted")
        self.prompt_tokens = r.add(Counter(p + "prompt_tokens_total", "Prompt tokens, as the server counted them.", ma))
        self.gen_tokens = r.add(
            Counter(
                p + "generation_tokens_total",
                "Generated tokens: counted=server (the server's own count) or chunks (stream chunks counted).",
                counted,
            )
        )
        self.embed_requests = r.add(
            Counter(
                p + "embedding_requests_total", "Embedding requests finished, by outcome.", (*ma, "outcome", "code")
            )
        )
        self.embed_latency = per_model(
            "embedding_latency_seconds", "Embedding requests: arrival to the last byte.", E2E_BUCKETS
        )
        self.embed_tokens = r.add(
            Counter(p + "embedding_prompt_tokens_total", "Input tokens of embedding requests (server's count).", ma)
        )
        self.other = r.add(
            Counter(p + "passthrough_requests_total", "Other requests passed through (model lists, ...).", ("outcome",))
        )
        self.started = r.add(
            Gauge(p + "start_time_seconds", "When the proxy started (Unix time): a fresh page has a sample.", ())
        )
        self.started.inc((), round(time.time(), 3))
        self.recent: deque[Measured] = deque(maxlen=RECENT)

    def begin(self, method: str, target: str, t0_ns: int) -> Exchange:
        return Exchange(self, classify(method, target), t0_ns)

    def page(self) -> bytes:
        return self.registry.render()


def outcome_of(server_outcome: str, status: int | None) -> str:
    """The `outcome` label from the server's end of an exchange and the answer's status."""
    if server_outcome == "cancelled":
        return "cancelled"
    if server_outcome != "ok":
        return f"upstream_{server_outcome}"
    if status is not None and status >= 500:
        return "http_5xx"
    if status is not None and status >= 400:
        return CLIENT_ERROR
    return "ok"


def model_of(api: Api, body: bytes, whole: bool) -> str:
    """The `model` a request body names: its JSON when it was kept whole, else searched in its first bytes."""
    if whole:
        return request_info(api, body).model or UNKNOWN
    match = _MODEL.search(body)
    if match is None:
        return UNKNOWN
    try:
        return str(json.loads(b'"' + match.group(1) + b'"'))
    except ValueError:
        return UNKNOWN


class Exchange:
    """One request through the proxy, as it passes (see `server.Exchange` for when each call comes)."""

    __slots__ = (
        "meters", "api", "t0_ns", "body", "whole", "labels", "flying", "reader", "m", "times",
    )  # fmt: skip

    def __init__(self, meters: Meters, api: Api | None, t0_ns: int):
        self.meters = meters
        self.api = api
        self.t0_ns = t0_ns
        self.body = bytearray()
        self.whole = True
        self.labels: tuple[str, str] = (UNKNOWN, api.name if api else "")
        self.flying = False
        self.reader: StreamReader | None = None
        self.m = Measured(self.labels[1], UNKNOWN, arrived_ns=t0_ns)
        self.times = Timeline()

    def request_data(self, data: bytes) -> None:
        if self.api is None or not self.whole:
            return
        room = BODY_SNIFF - len(self.body)
        if len(data) > room:
            self.body += data[:room]
            self.whole = False
        else:
            self.body += data

    def sent(self) -> None:
        """The whole request is upstream: its model is known, it is in flight."""
        if self.api is None or self.flying:
            return
        self.m.model = model_of(self.api, bytes(self.body), self.whole)
        self.body = bytearray()
        self.labels = (self.m.model, self.api.name)
        self.flying = True
        self.meters.in_flight.inc(self.labels)

    def response(self, t_ns: int, status: int, headers: hdr.Headers) -> None:
        self.m.status = status
        if self.api is None or status >= 400:
            return
        ctype = (hdr.value(headers, b"content-type") or b"").split(b";", 1)[0].strip().lower()
        self.m.streamed = ctype in STREAMING
        self.reader = StreamReader(self.api, self.m.streamed)

    def awaits_first_token(self) -> bool:
        """A model request whose answer's head is not measured yet, or a stream whose first token is not."""
        if self.api is None:
            return False
        if self.m.status is None:
            return True
        return self.reader is not None and self.m.streamed and self.times.first_ns is None

    def data(self, t_ns: int, data: bytes) -> None:
        if self.reader is not None:
            events = self.reader.feed(data)
            if events:
                self._events(t_ns, events)

    def _events(self, t_ns: int, events: list[Event]) -> None:
        """One read's events; a streamed answer's first token is a TTFT, each later one an inter-token gap."""
        times = self.times
        first, last = times.first_ns, times.last_ns
        tokens = times.apply(t_ns, events)
        if not tokens or not self.m.streamed:
            return
        meters, labels = self.meters, self.labels
        if first is None:
            meters.ttft.observe(labels, (t_ns - self.t0_ns) / 1e9)
            tokens, last = tokens - 1, t_ns
        if tokens and last is not None:
            meters.itl.observe(labels, (t_ns - last) / 1e9)
            for _ in range(tokens - 1):  # several in one read: no gap between them
                meters.itl.observe(labels, 0.0)

    def end(self, t_ns: int, server_outcome: str) -> None:
        meters, api, m = self.meters, self.api, self.m
        if server_outcome == "cancelled" and self.times.finished:
            server_outcome = "ok"  # the client left once the server had marked the answer complete (`[DONE]` read)
        outcome = outcome_of(server_outcome, m.status)
        if api is None:
            meters.other.inc((outcome,))
            return
        if self.flying:
            meters.in_flight.inc(self.labels, -1.0)
        else:  # never sent (upstream down): the model is still the one the client asked for
            m.model = model_of(api, bytes(self.body), self.whole)
            self.labels = (m.model, api.name)
        if self.reader is not None:
            if server_outcome == "ok":
                self._events(t_ns, self.reader.finish())
            if outcome == "ok" and (self.times.bad is not None or (m.streamed and not self.times.finished)):
                outcome = "stream_error"
            self._numbers(t_ns)
        m.outcome = outcome
        code = str(m.status) if m.status is not None else ("" if outcome == "cancelled" else _PROXY_CODE[outcome])
        if api.kind == "embed":
            meters.embed_requests.inc((*self.labels, outcome, code))
            if outcome == "ok":
                meters.embed_latency.observe(self.labels, (t_ns - self.t0_ns) / 1e9)
                if m.prompt_tokens is not None:
                    meters.embed_tokens.inc(self.labels, m.prompt_tokens)
        else:
            meters.requests.inc((*self.labels, outcome, code))
            self._observe(outcome)
        meters.recent.append(m)

    def _numbers(self, t_ns: int) -> None:
        """The request's numbers from what was seen of its answer."""
        m, t0, times = self.m, self.t0_ns, self.times
        m.e2e_s = (t_ns - t0) / 1e9
        m.chunks = self.reader.tokens if self.reader is not None else 0
        m.prompt_tokens = times.prompt_tokens()
        ollama = times.stats.get("ollama")
        if ollama is not None and ollama.load_ns is not None:
            m.load_s = ollama.load_ns / 1e9
        origin, output = times.output_tokens()
        if origin is not None:
            m.output_tokens, m.counted = output, "server"
        elif m.streamed and m.chunks:
            m.output_tokens, m.counted = m.chunks, "chunks"
        first, last = times.first_ns, times.last_ns
        if not m.streamed or first is None:
            return
        m.ttft_s = (first - t0) / 1e9
        m.ttfa_s = None if times.answer_ns is None else (times.answer_ns - t0) / 1e9
        n = m.output_tokens
        if n is not None and n >= 2 and last is not None and last > first:
            m.tpot_s = (last - first) / (n - 1) / 1e9

    def _observe(self, outcome: str) -> None:
        meters, labels, m = self.meters, self.labels, self.m
        if m.output_tokens is not None and m.counted is not None:
            meters.gen_tokens.inc((*labels, m.counted), m.output_tokens)
        if m.prompt_tokens is not None:
            meters.prompt_tokens.inc(labels, m.prompt_tokens)
        if outcome != "ok":
            return
        for family, value in (
            (meters.e2e, m.e2e_s),
            (meters.prompt_hist, m.prompt_tokens),
            (meters.gen_hist, m.output_tokens),
            (meters.load, m.load_s),
            (meters.ttfa, m.ttfa_s),
            (meters.tpot, m.tpot_s),
        ):
            if value is not None:
                family.observe(labels, value)


_PROXY_CODE = {
    "upstream_timeout": "504",
    **{k: "502" for k in OUTCOMES_FAILED if k.startswith("upstream_") and k != "upstream_timeout"},
}
"""The status the proxy itself answered with when the upstream failed."""
