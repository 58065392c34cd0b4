"""Turn a timed sequence of stream reads into what a client felt: TTFT, time to first answer, TPOT.

Pure: the runner hands in (monotonic ns, bytes read) pairs; the API table's `StreamReader` turns them into
events, and nothing here touches a socket or a clock, so every wire variant is tested from literal chunks.
No generated text is kept, logged or emitted: the reader gives counts and numbers only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from telegraf_llm_input.apis import PROBE_APIS
from telegraf_llm_input.apis.base import Event
from telegraf_llm_input.apis.reader import StreamReader
from telegraf_llm_input.apis.timeline import Timeline
from telegraf_llm_input.errors import ProbeError
from telegraf_llm_input.probenames import ProbeApi

ProbeSkip = Literal["no_model_loaded", "model_idle", "no_model_list", "no_generating_model"]
"""Why a probe was not sent (the `llm_probe` `skip_reason` tag): no model loaded to probe without loading one,
the loaded one is idle (no user request since the last probe: a probe would keep it loaded), the server's list
of loaded models could not be read, or every loaded model only embeds (Ollama answers a chat with 400)."""


@dataclass
class ProbeResult:
    """One probe's outcome. Times in ms; None = not measured (absent from the metric)."""

    success: bool
    error: ProbeError | None = None
    detail: str = ""
    """One line for the log: what went wrong, never any prompt or response text."""
    http_status: int | None = None
    ttft_ms: float | None = None
    ttfa_ms: float | None = None
    reasoning_ms: float | None = None
    e2e_ms: float | None = None
    output_tokens: int | None = None
    output_tokens_source: str | None = None
    """`usage` (OpenAI usage object), `server` (native counters), `chunks` (counted; an estimate)."""
    reasoning_tokens: int | None = None
    prompt_tokens: int | None = None
    tpot_ms: float | None = None
    tokens_per_s: float | None = None
    reasoning: bool | None = None
    load_ms: float | None = None
    server_prefill_ms: float | None = None
    server_decode_tokens_per_s: float | None = None
    cache_tokens: int | None = None
    connect_ms: float | None = None
    chunks: int = 0
    skipped: ProbeSkip | None = None
    """Not sent, and why: then `skipped=1` is the point's only field."""

    def fields(self) -> dict[str, int | float]:
        if self.skipped is not None:
            return {"skipped": 1}
        out: dict[str, int | float | None] = {
            "success": 1 if self.success else 0,
            "http_status": self.http_status,
            "ttft_ms": self.ttft_ms,
            "ttfa_ms": self.ttfa_ms,
            "reasoning_ms": self.reasoning_ms,
            "e2e_ms": self.e2e_ms,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "prompt_tokens": self.prompt_tokens,
            "tpot_ms": self.tpot_ms,
            "tokens_per_s": self.tokens_per_s,
            "reasoning": None if self.reasoning is None else int(self.reasoning),
            "load_ms": self.load_ms,
            "server_prefill_ms": self.server_prefill_ms,
            "server_decode_tokens_per_s": self.server_decode_tokens_per_s,
            "cache_tokens": self.cache_tokens,
            "connect_ms": self.connect_ms,
            "chunks": self.chunks,
        }
        return {k: v for k, v in out.items() if v is not None}


def _ms(start_ns: int, end_ns: int | None) -> float | None:
    return None if end_ns is None else (end_ns - start_ns) / 1e6


@dataclass
class StreamMeasure:
    """Accumulates one streamed response. `t0_ns`: just before the request was sent (monotonic)."""

    api: ProbeApi
    t0_ns: int
    http_status: int | None = None
    connect_ms: float | None = None
    times: Timeline = field(default_factory=Timeline)
    reader: StreamReader = field(init=False)

    def __post_init__(self) -> None:
        self.reader = StreamReader(PROBE_APIS[self.api])

    def receive(self, t_ns: int, chunk: bytes) -> None:
        """Bytes of the answer as read from the connection at t_ns."""
        self._apply(t_ns, self.reader.feed(chunk))

    def feed(self, t_ns: int, data: str) -> None:
        """One event's data (an SSE `data:` payload or one NDJSON line), received at t_ns."""
        self._apply(t_ns, self.reader.payload(data))

    def _apply(self, t_ns: int, events: list[Event]) -> None:
        self.times.apply(t_ns, events)

    def finish(self, end_ns: int, error: ProbeError | None = None, detail: str = "") -> ProbeResult:
        """The result at end of stream; `error`/`detail` from the transport (cut, timeout) win."""
        t = self.times
        if error is None:
            self._apply(end_ns, self.reader.finish())
        if error is None and t.bad is not None:
            error, detail = "bad_stream", t.bad
        if error is None and t.first_ns is None:
            error, detail = "empty", "the stream carried no generated text"
        if error is None and not t.finished:
            error, detail = "bad_stream", "the stream ended before the server marked it complete"
        result = ProbeResult(
            success=error is None,
            error=error,
            detail=detail,
            http_status=self.http_status,
            e2e_ms=_ms(self.t0_ns, end_ns),
            connect_ms=self.connect_ms,
            chunks=self.reader.chunks,
        )
        self._latency(result)
        self._tokens(result)
        self._server_timings(result)
        return result

    def _latency(self, r: ProbeResult) -> None:
        t = self.times
        r.ttft_ms = _ms(self.t0_ns, t.first_ns)
        if t.first_ns is None:
            return
        r.reasoning = self.reader.reasoning
        r.ttfa_ms = _ms(self.t0_ns, t.answer_ns)
        if r.reasoning and t.answer_ns is not None:
            r.reasoning_ms = (t.answer_ns - t.first_ns) / 1e6

    def _tokens(self, r: ProbeResult) -> None:
        t = self.times
        origin, tokens = t.output_tokens()
        source: str | None = None if origin is None else ("usage" if origin == "usage" else "server")
        if tokens is None and self.reader.tokens:
            source, tokens = "chunks", self.reader.tokens
        r.output_tokens, r.output_tokens_source = tokens, source
        usage = t.stats.get("usage")
        r.reasoning_tokens = None if usage is None else usage.reasoning_tokens
        r.prompt_tokens = t.prompt_tokens()
        if (
            tokens is not None
            and tokens >= 2
            and t.first_ns is not None
            and t.last_ns is not None
            and t.last_ns > t.first_ns
        ):
            span_ns = t.last_ns - t.first_ns
            r.tpot_ms = span_ns / (tokens - 1) / 1e6
            r.tokens_per_s = (tokens - 1) / (span_ns / 1e9)

    def _server_timings(self, r: ProbeResult) -> None:
        ollama, llamacpp, lmstudio = (self.times.stats.get(o) for o in ("ollama", "llamacpp", "lmstudio"))
        if ollama is not None:  # durations in ns
            r.load_ms = (ollama.load_ns or 0.0) / 1e6
            r.server_prefill_ms = (ollama.prompt_eval_ns or 0.0) / 1e6
            if ollama.output_tokens and ollama.eval_ns:
                r.server_decode_tokens_per_s = ollama.output_tokens / (ollama.eval_ns / 1e9)
        elif llamacpp is not None:
            r.server_prefill_ms = llamacpp.prefill_ms
            r.server_decode_tokens_per_s = llamacpp.decode_tokens_per_s
            r.cache_tokens = llamacpp.cache_tokens
        elif lmstudio is not None:  # LM Studio: time to first token as the server measured it (queue + prefill)
            r.server_prefill_ms = lmstudio.prefill_ms
            r.server_decode_tokens_per_s = lmstudio.decode_tokens_per_s


def failure(
    error: ProbeError, detail: str, *, http_status: int | None = None, e2e_ms: float | None = None
) -> ProbeResult:
    """A probe that never got a stream (connect refused, timeout, HTTP error)."""
    return ProbeResult(success=False, error=error, detail=detail, http_status=http_status, e2e_ms=e2e_ms)


def http_error_class(status: int) -> ProbeError:
    return "http_5xx" if status >= 500 else "http_4xx"
