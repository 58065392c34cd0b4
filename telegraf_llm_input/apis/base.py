"""What an API entry is, and what reading one of its streams yields.

An `Api` is a table row: the paths a request goes to, whether and how its answer streams, how to read one
decoded JSON object of the answer (`interpret` -> `Piece`) and, for APIs the probe can send, how to build its
request. The stream reader (`apis/reader.py`) turns bytes into `Event`s with the help of these rows; the probe
and the proxy consume the events. Pieces hold one chunk's text only while it is looked at; events hold
counts and numbers, never text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

Framing = Literal["sse", "ndjson", "json"]
"""How an answer arrives: SSE `data:` events, one JSON text per line, or one JSON document (not streamed)."""
Kind = Literal["generate", "embed"]
"""Generation (tokens) or embeddings (no output tokens): kept apart by whoever counts requests."""
Origin = Literal["usage", "ollama", "llamacpp", "lmstudio"]
"""Where a `Stats` came from: an OpenAI `usage` object, Ollama's final `done` object, llama.cpp's `timings`
(and its native `stop` object), LM Studio's `stats`."""
JSONObject = Mapping[str, object]


class Stats(NamedTuple):
    """Numbers the server reported about the request (None: not said). Never text. A tuple, as `Piece`."""

    origin: Origin
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    load_ns: float | None = None
    """Ollama `load_duration` (absent = 0: Go's omitempty): a cold load shows here."""
    prompt_eval_ns: float | None = None
    """Ollama `prompt_eval_duration`."""
    eval_ns: float | None = None
    """Ollama `eval_duration`."""
    total_ns: float | None = None
    """Ollama `total_duration`."""
    prefill_ms: float | None = None
    """llama.cpp `timings.prompt_ms`; LM Studio `stats.time_to_first_token` (queue + prefill)."""
    decode_tokens_per_s: float | None = None
    """llama.cpp `timings.predicted_per_second`; LM Studio `stats.tokens_per_second`."""
    cache_tokens: int | None = None
    """llama.cpp `timings.cache_n`: prompt tokens reused from the KV cache."""

    def merged(self, newer: Stats) -> Stats:
        """This, with every value the newer one says replacing the older (servers repeat or split their numbers)."""
        return self._replace(**{k: v for k, v in newer._asdict().items() if v is not None})


class Piece(NamedTuple):
    """What one decoded answer object says, whatever the API spelled it like (its text only while read).

    A tuple, not a frozen dataclass: one is made per streamed chunk, and a tuple is made in a quarter of the
    time (the proxy reads every chunk it forwards)."""

    content: str = ""
    reasoning: str = ""
    tool_call: bool = False
    finished: bool = False
    stats: tuple[Stats, ...] = ()
    error: bool = False


@dataclass(frozen=True)
class ProbeRequest:
    """What the probe asks for, independent of the API's spelling."""

    prompt: str
    messages: Sequence[Mapping[str, object]]
    max_tokens: int
    temperature: float
    model: str | None = None


@dataclass(frozen=True)
class Api:
    """One API: a row of the table in `apis/__init__.py`."""

    name: str
    """Stable identity (a label on what is counted per API)."""
    paths: tuple[str, ...]
    """Request paths, the one the probe sends first."""
    interpret: Callable[[object], Piece]
    """One decoded JSON object of the answer (a stream event or the whole document) -> Piece."""
    framing: Framing
    """How a streamed answer is framed (`json` for an API that never streams)."""
    stream_default: bool
    """Whether the answer streams when the request body says nothing (`stream` absent): Ollama yes, OpenAI no."""
    kind: Kind = "generate"
    method: str = "POST"
    server_type: str = "openai"
    """The `server_type` tag of a probe on a `type: auto` target."""
    build: Callable[[ProbeRequest], dict[str, object]] | None = None
    """The probe's streaming request body; None: the probe never sends this API."""
    takes_messages: bool = False
    """The probe's `messages` fit this API (chat); else only a plain prompt does."""


@dataclass(frozen=True)
class Token:
    """A chunk that carried generated text (answer, reasoning or a tool call). Role-only and empty chunks do not."""

    first: bool
    """The first one of the answer: time to first token."""
    reasoning: bool = False
    """It carried reasoning in a field of its own (`delta.reasoning`, Ollama `thinking`, ...)."""


@dataclass(frozen=True)
class Answer:
    """The answer (non-blank text after any reasoning) starts with this chunk. A later `Answer` moves it; a
    `NoAnswer` takes it back (text taken for the answer was inside `<think>`, or before a lone `</think>`)."""


@dataclass(frozen=True)
class NoAnswer:
    """What was taken for the start of the answer was reasoning after all; no answer has started."""


@dataclass(frozen=True)
class Finished:
    """The server marked the answer complete (`finish_reason`, `done: true`, `stop: true`, `[DONE]`, ...)."""


@dataclass(frozen=True)
class StreamError:
    """The answer broke: malformed JSON, an error object, a document too large to read. Nothing follows."""

    detail: str
    """One line for a log; never any of the answer's text."""


Event = Token | Answer | NoAnswer | Stats | Finished | StreamError


def text(value: object) -> str:
    return value if isinstance(value, str) else ""


def obj(value: object) -> JSONObject:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def count(value: object) -> int | None:
    """A non-negative count, or None (bools, negatives, NaN and non-numbers are not counts)."""
    if type(value) is int:  # JSON's counts, the common case first (a bool is not one: its type is bool)
        return value if value >= 0 else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    return None


def number(value: object) -> float | None:
    """A finite non-negative number as float, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def is_error(doc: object) -> bool:
    """Not an object, or one with a non-empty `error` (vLLM/OpenAI `{"error": {...}}`, Ollama `{"error": "..."}`)."""
    return not isinstance(doc, dict) or bool(doc.get("error"))
