"""Turn a timed sequence of streamed chunks into what a client felt: TTFT, time to first answer, TPOT.

Pure: the runner hands in (monotonic ns, event text) pairs; nothing here touches a socket or a
clock, so every wire variant is tested from literal chunks. Generated text is only inspected
(is it empty? where does `</think>` end?), never kept beyond one probe, logged or emitted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from telegraf_llm_input.errors import PROBE_ERRORS, ProbeError

Api = Literal["openai_chat", "openai_completions", "ollama", "llamacpp", "lmstudio"]

ERROR_CLASSES = PROBE_ERRORS
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_TAG_WINDOW = len(THINK_CLOSE) - 1


@dataclass(frozen=True)
class Piece:
    """What one decoded stream object says, whatever the API spelled it like."""

    content: str = ""
    reasoning: str = ""
    tool_call: bool = False
    finished: bool = False
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    """llama.cpp `timings` (prompt_ms, predicted_ms, predicted_per_second, cache_n, ...)."""
    native: dict[str, Any] | None = None
    """A final native object: Ollama's `done: true` object or llama.cpp's `/completion` `stop: true` one."""
    stats: dict[str, Any] | None = None
    """LM Studio REST `stats` (tokens_per_second, time_to_first_token in s, generation_time)."""
    error: bool = False


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def interpret(api: Api, obj: Any) -> Piece:
    """One parsed JSON chunk -> Piece. Unknown shapes give an empty Piece (ignored), not an error."""
    if not isinstance(obj, dict):
        return Piece(error=True)
    if "error" in obj and obj.get("error"):
        return Piece(error=True)  # vLLM/OpenAI `data: {"error": {...}}`, Ollama `{"error": "..."}` mid-stream
    if api == "ollama":
        message = _dict(obj.get("message")) or {}
        done = obj.get("done") is True
        return Piece(
            content=_text(message.get("content")) or _text(obj.get("response")),  # /api/chat or /api/generate
            reasoning=_text(message.get("thinking")) or _text(obj.get("thinking")),
            tool_call=bool(message.get("tool_calls")),
            finished=done,
            native=obj if done else None,
        )
    if api == "llamacpp":
        stop = obj.get("stop") is True
        return Piece(
            content=_text(obj.get("content")),
            finished=stop,
            timings=_dict(obj.get("timings")),
            native=obj if stop else None,
        )
    content, reasoning, tool, finished = [], [], False, False
    for choice in obj.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        if choice.get("finish_reason") is not None:
            finished = True
        if api == "openai_completions":
            content.append(_text(choice.get("text")))
            continue
        delta = _dict(choice.get("delta")) or {}
        content.append(_text(delta.get("content")))
        # vLLM (current), Ollama and mlx say `reasoning`; llama.cpp, SGLang, LM Studio and older vLLM `reasoning_content`.
        reasoning.append(_text(delta.get("reasoning")) or _text(delta.get("reasoning_content")))
        tool = tool or bool(delta.get("tool_calls"))
    return Piece(
        content="".join(content),
        reasoning="".join(reasoning),
        tool_call=tool,
        finished=finished,
        usage=_dict(obj.get("usage")),
        timings=_dict(obj.get("timings")),
        stats=_dict(obj.get("stats")),
    )


class ThinkTags:
    """Finds where the answer starts in content that may carry inline `<think>...</think>`.

    Also handles templates that open the think block in the prompt, so only `</think>` is streamed:
    content before a `</think>` is reasoning, decided when the tag arrives.
    """

    def __init__(self) -> None:
        self._text = ""
        self.opened = False
        self.closed_at: int | None = None
        self.first_plain_ns: int | None = None
        self.first_after_close_ns: int | None = None

    def feed(self, t_ns: int, piece: str) -> None:
        start = max(0, len(self._text) - _TAG_WINDOW)
        self._text += piece
        window = self._text[start:]
        if not self.opened and THINK_OPEN in window:
            self.opened = True
        if self.closed_at is None:
            idx = window.find(THINK_CLOSE)
            if idx >= 0:
                self.closed_at = start + idx + len(THINK_CLOSE)
        if self.first_plain_ns is None and self._text.strip():
            self.first_plain_ns = t_ns
        if self.closed_at is not None and self.first_after_close_ns is None and self._text[self.closed_at :].strip():
            self.first_after_close_ns = t_ns

    @property
    def reasoning(self) -> bool:
        return self.opened or self.closed_at is not None

    def answer_ns(self) -> int | None:
        if self.closed_at is not None:
            return self.first_after_close_ns
        if self.opened:
            return None  # still thinking when the stream ended (max_tokens too small for this model)
        return self.first_plain_ns


@dataclass
class ProbeResult:
    """One probe's outcome. Times in ms; None = not measured (absent from the metric)."""

    success: bool
    error: str | None = None
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

    def fields(self) -> dict[str, int | float]:
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


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _ms(start_ns: int, end_ns: int | None) -> float | None:
    return None if end_ns is None else (end_ns - start_ns) / 1e6


@dataclass
class StreamMeasure:
    """Accumulates one streamed response. `t0_ns`: just before the request was sent (monotonic)."""

    api: Api
    t0_ns: int
    http_status: int | None = None
    connect_ms: float | None = None
    chunks: int = 0
    done_marker: bool = False
    finished: bool = False
    first_ns: int | None = None
    last_ns: int | None = None
    text_chunks: int = 0
    reasoning_field: bool = False
    first_reasoning_field_ns: int | None = None
    bad: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    native: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    think: ThinkTags = field(default_factory=ThinkTags)

    def feed(self, t_ns: int, data: str) -> None:
        """One event's data (an SSE `data:` payload or one NDJSON line), received at t_ns."""
        if self.bad is not None:
            return
        if data.strip() == "[DONE]":
            self.done_marker = True
            return
        try:
            obj = json.loads(data)
        except ValueError:
            self.bad = f"malformed JSON in stream chunk {self.chunks + 1}"
            return
        self.chunks += 1
        piece = interpret(self.api, obj)
        if piece.error:
            self.bad = f"server reported an error in stream chunk {self.chunks}"
            return
        self.add(t_ns, piece)

    def add(self, t_ns: int, piece: Piece) -> None:
        generated = bool(piece.content or piece.reasoning or piece.tool_call)
        if generated:
            if self.first_ns is None:
                self.first_ns = t_ns
            self.last_ns = t_ns
            self.text_chunks += 1
        if piece.reasoning:
            self.reasoning_field = True
        if piece.content:
            self.think.feed(t_ns, piece.content)
        if piece.finished:
            self.finished = True
        if piece.usage is not None:
            self.usage = piece.usage  # the last one wins: some servers repeat cumulative usage on every chunk
        if piece.timings is not None:
            self.timings = piece.timings
        if piece.native is not None:
            self.native = piece.native
        if piece.stats is not None:
            self.stats = piece.stats

    def finish(self, end_ns: int, error: str | None = None, detail: str = "") -> ProbeResult:
        """The result at end of stream; `error`/`detail` from the transport (cut, timeout) win."""
        if error is None and self.bad is not None:
            error, detail = "bad_stream", self.bad
        if error is None and self.first_ns is None:
            error, detail = "empty", "the stream carried no generated text"
        if error is None and not (self.finished or self.done_marker):
            error, detail = "bad_stream", "the stream ended before the server marked it complete"
        result = ProbeResult(
            success=error is None,
            error=error,
            detail=detail,
            http_status=self.http_status,
            e2e_ms=_ms(self.t0_ns, end_ns),
            connect_ms=self.connect_ms,
            chunks=self.chunks,
        )
        self._latency(result)
        self._tokens(result)
        self._server_timings(result)
        return result

    def _latency(self, r: ProbeResult) -> None:
        r.ttft_ms = _ms(self.t0_ns, self.first_ns)
        if self.first_ns is None:
            return
        r.reasoning = self.reasoning_field or self.think.reasoning
        answer_ns = self.think.answer_ns()
        r.ttfa_ms = _ms(self.t0_ns, answer_ns)
        if r.reasoning and answer_ns is not None:
            r.reasoning_ms = (answer_ns - self.first_ns) / 1e6

    def _tokens(self, r: ProbeResult) -> None:
        usage = self.usage or {}
        native = self.native or {}
        timings = self.timings or {}
        counted = [
            ("usage", _int(usage.get("completion_tokens"))),
            ("server", _int(native.get("eval_count")) if self.api == "ollama" else None),
            ("server", _int(native.get("tokens_predicted")) or _int(timings.get("predicted_n"))),
        ]
        source, tokens = next(((s, n) for s, n in counted if n), (None, None))
        if tokens is None and self.text_chunks:
            source, tokens = "chunks", self.text_chunks
        r.output_tokens, r.output_tokens_source = tokens, source
        details = _dict(usage.get("completion_tokens_details")) or {}
        r.reasoning_tokens = _int(details.get("reasoning_tokens"))
        prompt = _int(usage.get("prompt_tokens"))
        if prompt is None and self.api == "ollama" and self.native is not None:
            prompt = _int(native.get("prompt_eval_count")) or 0  # omitted when zero
        if prompt is None:
            prompt = _int(native.get("tokens_evaluated"))
        r.prompt_tokens = prompt
        if (
            tokens is not None
            and tokens >= 2
            and self.first_ns is not None
            and self.last_ns is not None
            and self.last_ns > self.first_ns
        ):
            span_ns = self.last_ns - self.first_ns
            r.tpot_ms = span_ns / (tokens - 1) / 1e6
            r.tokens_per_s = (tokens - 1) / (span_ns / 1e9)

    def _server_timings(self, r: ProbeResult) -> None:
        if self.api == "ollama" and self.native is not None:
            n = self.native  # durations in ns; Go's omitempty drops zero values, so absent means 0
            r.load_ms = (_num(n.get("load_duration")) or 0.0) / 1e6
            r.server_prefill_ms = (_num(n.get("prompt_eval_duration")) or 0.0) / 1e6
            count, duration = _int(n.get("eval_count")), _num(n.get("eval_duration"))
            if count and duration:
                r.server_decode_tokens_per_s = count / (duration / 1e9)
        elif self.timings:
            t = self.timings
            r.server_prefill_ms = _num(t.get("prompt_ms"))
            r.server_decode_tokens_per_s = _num(t.get("predicted_per_second"))
            r.cache_tokens = _int(t.get("cache_n"))
        elif self.stats:  # LM Studio: time to first token as the server measured it (queue + prefill), in s
            ttft_s = _num(self.stats.get("time_to_first_token"))
            r.server_prefill_ms = ttft_s * 1000.0 if ttft_s is not None else None
            r.server_decode_tokens_per_s = _num(self.stats.get("tokens_per_second"))


def failure(error: str, detail: str, *, http_status: int | None = None, e2e_ms: float | None = None) -> ProbeResult:
    """A probe that never got a stream (connect refused, timeout, HTTP error)."""
    return ProbeResult(success=False, error=error, detail=detail, http_status=http_status, e2e_ms=e2e_ms)


def http_error_class(status: int) -> ProbeError:
    return "http_5xx" if status >= 500 else "http_4xx"
