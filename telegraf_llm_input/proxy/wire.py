"""HTTP/1.1 as the proxy writes it: message heads and chunked framing (serialization only; llhttp, through
httptools, parses everything the proxy reads), and the head of a request as the client's side parsed it."""

from __future__ import annotations

from dataclasses import dataclass

from telegraf_llm_input.proxy.headers import Headers

DISCARD_S = 1.0
"""After an early error answer, how long the rest of a request body is read and dropped (closing with unread
bytes would reset the connection and could lose the answer)."""
MAX_HEAD_BYTES = 65536
"""A message's head (start line and header fields) at most: a lying peer cannot grow memory."""
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
NO_BODY_STATUS = frozenset({204, 304})
"""Answers without a body whatever their head says."""


@dataclass(slots=True)
class Request:
    """A request's head as it arrived; `t_ns`: when (monotonic ns, the read that completed it)."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    """The client keeps the connection after this exchange (its HTTP version and Connection field)."""
    http10: bool
    chunked: bool
    """The body comes in chunked framing (else Content-Length, or none)."""
    expect_continue: bool
    t_ns: int
    connection: list[bytes]
    """Its Connection field values."""


def head_over_limit(earlier_reads: int, this_read: int, first: bytes, fields: Headers) -> bool:
    """A head llhttp just completed is over MAX_HEAD_BYTES. `earlier_reads`: the bytes of the reads it was still
    incomplete after (counted as they come: a field that never ends stops there); then what llhttp handed over
    (its start line's target or reason and fields), summed only when this read could hold that much."""
    if earlier_reads + this_read <= MAX_HEAD_BYTES:
        return False
    return len(first) + sum(len(name) + len(value) for name, value in fields) > MAX_HEAD_BYTES


def _fields(headers: Headers) -> list[bytes]:
    return [b"%s: %s\r\n" % (name, value) for name, value in headers]


def request_head(method: bytes, target: bytes, headers: Headers) -> bytes:
    return b"".join([b"%s %s HTTP/1.1\r\n" % (method, target), *_fields(headers), b"\r\n"])


def response_head(status: int, reason: bytes, headers: Headers) -> bytes:
    return b"".join([b"HTTP/1.1 %d %s\r\n" % (status, reason), *_fields(headers), b"\r\n"])


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def answer(status: int, reason: bytes, headers: Headers, body: bytes) -> bytes:
    """A whole answer with a Content-Length body."""
    return response_head(status, reason, [*headers, (b"content-length", b"%d" % len(body))]) + body
