"""What the proxy measures of each forwarded request, and the page's metric families.

The answer is only inspected on its way through (is a chunk content? which usage did the server report?),
with the probe's stream readers and its `StreamMeasure`: the same reading of every API's stream for both.
Prompt and answer text are never kept past the chunk being read, logged or exposed; of the request body only
the first BODY_SNIFF bytes are held, for the `model` name.

Meaning as vLLM's (a dashboard reads them the same): TTFT from the request's arrival to the first generated
token (content, reasoning or a tool call; never a role-only chunk or the first byte), inter-token latency
between generated chunks, time per output token = (last - first token) / (tokens - 1), e2e from arrival to
the answer's last byte. Time to first answer: for reasoning models, the first token after the thinking part.
Tokens are the server's own counts (OpenAI `usage`, Ollama's final `prompt_eval_count`/`eval_count`), else
the generated chunks counted (label `counted="chunks"`). Streams only get TTFT and ITL: a non-streamed
answer arrives at once.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass

from telegraf_llm_input.probe.measure import Api, ProbeResult, StreamMeasure
from telegraf_llm_input.probe.sse import NDJSONParser, SSEParser
from telegraf_llm_input.proxy import headers as hdr
from telegraf_llm_input.proxy.names import OUTCOMES_FAILED, PREFIX
from telegraf_llm_input.proxy.registry import Counter, Gauge, Histogram, Registry

BODY_SNIFF = 256 * 1024
"""Request-body bytes kept to read `model` (and `stream`); a bigger body (images) is searched in this prefix."""
ANSWER_KEEP = 16 * 1024 * 1024
"""A non-streamed answer up to this size is read whole at its end for its usage (embeddings can be large)."""
RECENT = 256
"""Per-request records kept for tests and `--log-level debug` (numbers only)."""
UNKNOWN = "unknown"
_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,256})"')


@dataclass(frozen=True)
class Route:
    api: str
    """The `api` label: ollama_chat, openai_chat, ..."""
    parse: Api | None
    """How its stream is read (the probe's API names); None: not read (embeddings: only the final usage)."""
    embed: bool = False


ROUTES: dict[str, Route] = {
    "/api/generate": Route("ollama_generate", "ollama"),
    "/api/chat": Route("ollama_chat", "ollama"),
    "/api/embed": Route("ollama_embed", "ollama", embed=True),
    "/api/embeddings": Route("ollama_embed", "ollama", embed=True),
    "/v1/chat/completions": Route("openai_chat", "openai_chat"),
    "/v1/completions": Route("openai_completions", "openai_completions"),
    "/v1/embeddings": Route("openai_embeddings", "openai_chat", embed=True),
}
"""POST paths that are model requests; everything else passes through counted only."""

# vLLM's bucket bounds, with finer ones below 10 ms (a local server on loopback answers that fast)
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2,
               0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
               60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)


@dataclass(frozen=True)
class Record:
    """One finished request as measured: numbers only."""

    api: str
    model: str
    outcome: str
    status: int | None
    streamed: bool
    result: ProbeResult | None


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
        self.ttft = r.add(
            Histogram(
                p + "time_to_first_token_seconds", "Arrival to the first generated token (streams).", ma, TTFT_BUCKETS
            )
        )
        self.ttfa = r.add(
            Histogram(
                p + "time_to_first_answer_seconds",
                "Arrival to the first token of the answer after any thinking (streams).",
                ma,
                TTFT_BUCKETS,
            )
        )
        self.itl = r.add(
            Histogram(p + "inter_token_latency_seconds", "Gap between generated chunks (streams).", ma, ITL_BUCKETS)
        )
        self.tpot = r.add(
            Histogram(
                p + "request_time_per_output_token_seconds",
                "Per request: (last - first token) / (tokens - 1) (streams).",
                ma,
                ITL_BUCKETS,
            )
        )
        self.e2e = r.add(
            Histogram(p + "e2e_request_latency_seconds", "Arrival to the last byte of the answer.", ma, E2E_BUCKETS)
        )
        self.load = r.add(
            Histogram(
                p + "load_duration_seconds", "Ollama's load_duration per request (a cold start).", ma, E2E_BUCKETS
            )
        )
        self.prompt_hist = r.add(
            Histogram(p + "request_prompt_tokens", "Prompt tokens per finished request.", ma, TOKEN_BUCKETS)
        )
        self.gen_hist = r.add(
            Histogram(p + "request_generation_tokens", "Generated tokens per finished request.", ma, TOKEN_BUCKETS)
        )
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
        self.embed_latency = r.add(
            Histogram(p + "embedding_latency_seconds", "Embedding requests: arrival to the last byte.", ma, E2E_BUCKETS)
        )
        self.embed_tokens = r.add(
            Counter(p + "embedding_prompt_tokens_total", "Input tokens of embedding requests (server's count).", ma)
        )
        self.other = r.add(
            Counter(p + "passthrough_requests_total", "Other requests passed through (model lists, ...).", ("outcome",))
        )
        self.recent: deque[Record] = deque(maxlen=RECENT)

    def begin(self, method: str, target: str, t0_ns: int) -> Exchange:
        route = ROUTES.get(target.split("?", 1)[0]) if method == "POST" else None
        return Exchange(self, route, t0_ns)

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
        return "http_4xx"
    return "ok"


def model_of(body: bytes, whole: bool) -> str:
    """The `model` a request body names: its JSON when it was kept whole, else searched in its first bytes."""
    if whole:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            model = doc.get("model")
            return model if isinstance(model, str) and model else UNKNOWN
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
        "meters", "route", "t0_ns", "body", "whole", "model", "labels", "status", "parser", "measure",
        "answer", "answer_over", "prev_ns", "ttft_seen", "flying",
    )  # fmt: skip

    def __init__(self, meters: Meters, route: Route | None, t0_ns: int):
        self.meters = meters
        self.route = route
        self.t0_ns = t0_ns
        self.body = bytearray()
        self.whole = True
        self.model = UNKNOWN
        self.labels: tuple[str, str] = (UNKNOWN, route.api if route else "")
        self.status: int | None = None
        self.parser: SSEParser | NDJSONParser | None = None
        self.measure: StreamMeasure | None = None
        self.answer: bytearray | None = None
        self.answer_over = False
        self.prev_ns: int | None = None
        self.ttft_seen = False
        self.flying = False

    def request_data(self, data: bytes) -> None:
        if self.route is None or not self.whole:
            return
        room = BODY_SNIFF - len(self.body)
        if len(data) > room:
            self.body += data[:room]
            self.whole = False
        else:
            self.body += data

    def sent(self) -> None:
        """The whole request is upstream: its model is known, it is in flight."""
        if self.route is None or self.flying:
            return
        self.model = model_of(bytes(self.body), self.whole)
        self.body = bytearray()
        self.labels = (self.model, self.route.api)
        self.flying = True
        self.meters.in_flight.inc(self.labels)

    def response(self, t_ns: int, status: int, headers: hdr.Headers) -> None:
        self.status = status
        route = self.route
        if route is None or status >= 400 or route.parse is None:
            return
        ctype = (hdr.value(headers, b"content-type") or b"").split(b";", 1)[0].strip().lower()
        self.measure = StreamMeasure(route.parse, self.t0_ns, http_status=status)
        if ctype == b"text/event-stream" and not route.embed:
            self.parser = SSEParser()
        elif ctype == b"application/x-ndjson" and not route.embed:
            self.parser = NDJSONParser()
        else:
            self.answer = bytearray()

    def data(self, t_ns: int, data: bytes) -> None:
        if self.measure is None:
            return
        if self.parser is None:
            if self.answer is not None and not self.answer_over:
                if len(self.answer) + len(data) <= ANSWER_KEEP:
                    self.answer += data
                else:
                    self.answer_over, self.answer = True, None
            return
        measure = self.measure
        for event in self.parser.feed(data):
            text = event if isinstance(event, str) else event.data
            before = measure.last_ns
            measure.feed(t_ns, text)
            if measure.last_ns is not None and measure.last_ns != before:
                if before is None:
                    self.meters.ttft.observe(self.labels, (t_ns - self.t0_ns) / 1e9)
                else:
                    self.meters.itl.observe(self.labels, (t_ns - before) / 1e9)

    def end(self, t_ns: int, server_outcome: str) -> None:
        m = self.meters
        route = self.route
        outcome = outcome_of(server_outcome, self.status)
        if route is None:
            m.other.inc((outcome,))
            return
        if self.flying:
            m.in_flight.inc(self.labels, -1.0)
        code = str(self.status) if self.status is not None else ("" if outcome == "cancelled" else _PROXY_CODE[outcome])
        result = self._result(t_ns) if self.measure is not None else None
        if outcome == "ok" and result is not None and result.error == "bad_stream" and self.parser is not None:
            outcome = "stream_error"
        streamed = self.parser is not None
        if route.embed:
            m.embed_requests.inc((*self.labels, outcome, code))
            if outcome == "ok":
                m.embed_latency.observe(self.labels, (t_ns - self.t0_ns) / 1e9)
                if result is not None and result.prompt_tokens is not None:
                    m.embed_tokens.inc(self.labels, result.prompt_tokens)
        else:
            m.requests.inc((*self.labels, outcome, code))
            if result is not None:
                self._observe(result, outcome, streamed, (t_ns - self.t0_ns) / 1e9)
        m.recent.append(Record(route.api, self.model, outcome, self.status, streamed, result))

    def _result(self, t_ns: int) -> ProbeResult:
        measure = self.measure
        assert measure is not None
        if self.parser is None and self.answer is not None:
            measure.feed(t_ns, self.answer.decode("utf-8", "replace"))  # the whole answer: one JSON document
            self.answer = None
        elif isinstance(self.parser, NDJSONParser):
            for line in self.parser.close():
                measure.feed(t_ns, line)
        return measure.finish(t_ns)

    def _observe(self, r: ProbeResult, outcome: str, streamed: bool, e2e_s: float) -> None:
        m, labels = self.meters, self.labels
        if r.output_tokens is not None and (streamed or r.output_tokens_source != "chunks"):
            counted = "chunks" if r.output_tokens_source == "chunks" else "server"
            m.gen_tokens.inc((*labels, counted), r.output_tokens)
        if r.prompt_tokens is not None:
            m.prompt_tokens.inc(labels, r.prompt_tokens)
        if outcome != "ok":
            return
        m.e2e.observe(labels, e2e_s)
        if r.prompt_tokens is not None:
            m.prompt_hist.observe(labels, r.prompt_tokens)
        if r.output_tokens is not None:
            m.gen_hist.observe(labels, r.output_tokens)
        if r.load_ms is not None:
            m.load.observe(labels, r.load_ms / 1000.0)
        if streamed:
            if r.ttfa_ms is not None:
                m.ttfa.observe(labels, r.ttfa_ms / 1000.0)
            if r.tpot_ms is not None:
                m.tpot.observe(labels, r.tpot_ms / 1000.0)


_PROXY_CODE = {
    "upstream_timeout": "504",
    **{k: "502" for k in OUTCOMES_FAILED if k.startswith("upstream_") and k != "upstream_timeout"},
}
"""The status the proxy itself answered with when the upstream failed."""
