"""Incremental stream framing: Server-Sent Events (OpenAI-compatible, llama.cpp) and NDJSON (Ollama).

Bytes arrive in arbitrary pieces (a UTF-8 character or a CRLF may be split across reads); these
parsers keep the partial tail and return whole events as soon as they are complete, so a reader
can timestamp each event at the read that completed it.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

DONE = "[DONE]"
_BREAK = re.compile(r"\r\n|\r|\n")
_UTF8 = codecs.getincrementaldecoder("utf-8")


class LineBuffer:
    """Splits a byte stream into text lines ending in LF, CRLF or CR (the SSE rule)."""

    def __init__(self) -> None:
        self._decoder: codecs.IncrementalDecoder | None = None
        """Made by the first read that needs one (the SSE fast path decodes whole reads itself)."""
        self._tail = ""
        self._pending_cr = False

    def feed(self, data: bytes | str) -> list[str]:
        if isinstance(data, str):
            text = data
        else:
            if self._decoder is None:
                self._decoder = _UTF8(errors="replace")
            text = self._decoder.decode(data)
        if not text:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if text[0] == "\n":
                text = text[1:]  # second half of a CRLF split across reads
        buf = self._tail + text
        if "\n" not in buf and "\r" not in buf:
            self._tail = buf
            return []
        lines = _BREAK.split(buf)
        self._pending_cr = buf[-1] == "\r"
        self._tail = lines.pop()
        return lines

    def clean(self) -> bool:
        """Nothing is held from the last read (no partial line, character or CRLF)."""
        decoder = self._decoder
        return not self._tail and not self._pending_cr and (decoder is None or not decoder.getstate()[0])

    def close(self) -> str:
        """The unterminated last line (may be empty)."""
        rest = self._tail + (self._decoder.decode(b"", final=True) if self._decoder is not None else "")
        self._tail = ""
        return rest


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str | None = None

    @property
    def done(self) -> bool:
        """OpenAI's end-of-stream sentinel `data: [DONE]`."""
        return self.data.strip() == DONE


class SSEParser:
    """WHATWG event-stream parsing reduced to what model servers send.

    `data:` lines accumulate (joined by newlines); a blank line dispatches the event; lines
    starting with `:` are comments (keep-alives); `event:` names the event; `id:`/`retry:` and
    unknown fields are ignored. An event still open at end of stream is discarded, as the spec says.
    """

    def __init__(self) -> None:
        self._lines = LineBuffer()
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, data: bytes | str) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in self._lines.feed(data):
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def feed_data(self, data: bytes) -> list[str]:
        """The data of each event `data` completes (`feed`'s events' `.data`), read at once when the read is what
        servers send (whole events of one `data:` line each, nothing held from the last read)."""
        if not self._data and self._event is None and self._lines.clean():
            try:
                text = data.decode()
            except UnicodeDecodeError:
                text = ""
            if text.endswith("\n\n") and "\r" not in text:
                body = text[:-2]
                if "\n" not in body:  # one event, the most common read
                    if body.startswith("data:"):
                        return [body[6:] if body.startswith("data: ") else body[5:]]
                else:
                    found: list[str] = []
                    for part in body.split("\n\n"):
                        if not part.startswith("data:") or "\n" in part:
                            break
                        found.append(part[6:] if part.startswith("data: ") else part[5:])
                    else:
                        return found
        return [event.data for event in self.feed(data)]

    def close(self) -> bool:
        """End of stream. True when an event was left open (no blank line after it): it is discarded."""
        partial = bool(self._data) or bool(self._lines.close())
        self._data, self._event = [], None
        return partial

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            if not self._data:
                self._event = None
                return None
            event = SSEEvent("\n".join(self._data), self._event)
            self._data, self._event = [], None
            return event
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


class NDJSONParser:
    """Newline-delimited JSON (Ollama's native API): one JSON text per non-blank line."""

    def __init__(self) -> None:
        self._lines = LineBuffer()

    def feed(self, data: bytes | str) -> list[str]:
        if isinstance(data, bytes) and data.endswith(b"\n") and b"\r" not in data and self._lines.clean():
            try:  # whole lines, nothing held: what servers send, read at once
                text = data[:-1].decode()
            except UnicodeDecodeError:
                pass
            else:
                if "\n" not in text:
                    return [text] if text.strip() else []
                return [line for line in text.split("\n") if line.strip()]
        return [line for line in self._lines.feed(data) if line.strip()]

    def close(self) -> list[str]:
        rest = self._lines.close()
        return [rest] if rest.strip() else []
