"""The one stream reader: bytes of an answer in, `Event`s out, as they arrive, for any API of the table.

Push-style: `feed(chunk)` with whatever the socket gave (a UTF-8 character or an event may be split across
reads) returns the events completed by it; `finish()` at end of answer returns the rest. The probe stamps
each call's events with the time of the read; a proxy does the same while passing the bytes on. The reader
keeps counts and flags, never the answer's text (only the few characters a split `</think>` needs); an
answer that is one JSON document (not streamed) is held until it ends, up to `max_document_bytes`.
"""

from __future__ import annotations

from collections.abc import Iterable

from telegraf_llm_input.apis.base import (
    Answer,
    Api,
    Event,
    Finished,
    NoAnswer,
    Piece,
    StreamError,
    Token,
)
from telegraf_llm_input.apis.framing import DONE, NDJSONParser, SSEParser
from telegraf_llm_input.apis.think import ThinkTags
from telegraf_llm_input.jsontext import loads

_TOKEN = ((Token(False), Token(False, True)), (Token(True), Token(True, True)))
"""Events are frozen: one of each kind serves every chunk (by [first][reasoning])."""
_ANSWER, _NO_ANSWER, _FINISHED = Answer(), NoAnswer(), Finished()
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""A non-streamed answer larger than this is passed on unread (an embeddings batch can be large)."""


class StreamReader:
    """Reads one answer of `api`; `stream`: what the request asked for (see `apis.request_info`)."""

    def __init__(self, api: Api, stream: bool = True, max_document_bytes: int = MAX_DOCUMENT_BYTES):
        self.api = api
        self.framing = api.framing if stream else "json"
        self._sse = SSEParser() if self.framing == "sse" else None
        self._lines = NDJSONParser() if self.framing == "ndjson" else None
        self._document: bytearray | None = bytearray() if self.framing == "json" else None
        self._max_document = max_document_bytes
        self._think = ThinkTags()
        self.chunks = 0
        """JSON objects read."""
        self.tokens = 0
        """Chunks that carried generated text (an estimate of output tokens where the server gives no count)."""
        self.reasoning_field = False
        """Reasoning came in a field of its own."""
        self.failed: str | None = None
        """Why the answer could not be read (set once; nothing is read after it)."""
        self._answer: int | None = None

    @property
    def reasoning(self) -> bool:
        """The model reasoned first (a reasoning field, or `<think>` tags in the content)."""
        return self.reasoning_field or self._think.reasoning

    def feed(self, chunk: bytes) -> list[Event]:
        if self.failed is not None:
            return []
        if self._sse is not None:
            payloads = self._sse.feed_data(chunk)
            return self.payload(payloads[0]) if len(payloads) == 1 else self._payloads(payloads)
        if self._lines is not None:
            return self._payloads(self._lines.feed(chunk))
        assert self._document is not None
        self._document += chunk
        if len(self._document) > self._max_document:
            self._document = bytearray()
            return self._fail(f"answer larger than {self._max_document} bytes: not read")
        return []

    def finish(self) -> list[Event]:
        """End of the answer: an unterminated last NDJSON line, or the whole document, is read now."""
        if self.failed is not None:
            return []
        if self._sse is not None:
            self._sse.close()  # an event without its blank line is discarded, as the SSE spec says
            return []
        if self._lines is not None:
            return self._payloads(self._lines.close())
        assert self._document is not None
        document, self._document = bytes(self._document), bytearray()
        return self.payload(document.decode("utf-8", errors="replace")) if document.strip() else []

    def _payloads(self, payloads: Iterable[str]) -> list[Event]:
        events: list[Event] = []
        for data in payloads:
            events += self.payload(data)
        return events

    def payload(self, data: str) -> list[Event]:
        """One framed payload: an SSE event's data, one NDJSON line or the whole document."""
        if self.failed is not None:
            return []
        if data[:1] != "{" and data.strip() == DONE:
            return [_FINISHED]
        try:
            doc = loads(data)
        except ValueError:
            return self._fail(f"malformed JSON in stream chunk {self.chunks + 1}")
        self.chunks += 1
        piece = self.api.interpret(doc)
        if piece.error:
            return self._fail(f"server reported an error in stream chunk {self.chunks}")
        return self._events(piece)

    def _events(self, piece: Piece) -> list[Event]:
        content, reasoning = piece.content, piece.reasoning
        events: list[Event] = []
        if content or reasoning or piece.tool_call:
            self.tokens += 1
            events.append(_TOKEN[self.tokens == 1][bool(reasoning)])
        if reasoning:
            self.reasoning_field = True
        if content:
            self._think.feed(self.tokens, content)
            answer = self._think.answer_at()
            if answer != self._answer:
                self._answer = answer
                events.append(_NO_ANSWER if answer is None else _ANSWER)
        if piece.stats:
            events += piece.stats
        if piece.finished:
            events.append(_FINISHED)
        return events

    def _fail(self, detail: str) -> list[Event]:
        self.failed = detail
        return [StreamError(detail)]
