"""The upstream model server: connections to it (answers parsed by llhttp through httptools as bytes arrive),
and a few idle keep-alive ones kept.

An idle connection is reused only while young (IDLE_S: llama-server drops its own after 5 s, Go servers
later) and while it received nothing (an answer nobody asked for, a `408` before the close); a request that
still finds a dead one is retried once on a fresh connection when nothing of the answer arrived and its body
was small enough to keep (exchange.py).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Protocol, cast

import httptools

from telegraf_llm_input.proxy import headers as hdr, wire
from telegraf_llm_input.proxy.address import Address
from telegraf_llm_input.proxy.wire import MAX_HEAD_BYTES, NO_BODY_STATUS

__all__ = ["Address", "Upstream", "UpstreamConn", "UpstreamError"]

IDLE_S = 4.0
MAX_IDLE = 64
"""Idle connections kept: one per concurrent stream of a busy server, more is waste."""


class UpstreamError(Exception):
    """The upstream could not be reached. `kind`: refused, timeout, tls, unreachable."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class Receiver(Protocol):
    """Who an answer is for (the exchange that sent the request); called back as it arrives."""

    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], chunked: bool, sized: bool,
        connection: list[bytes],
    ) -> None:  # fmt: skip
        """`chunked`: it has a Transfer-Encoding (one plain chunked); `sized`: a Content-Length; `connection`: its
        Connection field values."""
        ...

    def response_body(self, data: bytes) -> None: ...
    def response_end(self) -> None: ...
    def upstream_flush(self) -> None:
        """After each read: what it brought can go on now (one write per read)."""
        ...

    def upstream_lost(self) -> None: ...
    def upstream_bad(self, message: str) -> None: ...
    def upstream_writable(self, ok: bool) -> None: ...


class _NoBody(Exception):
    """The answer to a HEAD request ends with its head (llhttp cannot be told so through httptools)."""


class _HeadTooBig(Exception):
    """An answer head over MAX_HEAD_BYTES: a lying upstream cannot grow the proxy's memory."""


_WATCHED_LENGTHS = frozenset({len(b"transfer-encoding"), len(b"content-length"), len(b"connection")})


class _BadFraming(Exception):
    """An answer whose body the proxy cannot pass on as framed (a transfer coding other than `chunked`)."""


class UpstreamConn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.receiver: Receiver | None = None
        self.no_body = False
        """The request was a HEAD: its answer has no body whatever its head says."""
        self.lost = False
        self.keep = False
        """The last answer ended with the connection fit for the next request."""
        self.now = 0
        """When the current read arrived (monotonic ns)."""
        self.reading = True
        self._reason = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._te: list[bytes] = []
        """The Transfer-Encoding field values of the answer being read."""
        self._connection: list[bytes] = []
        self._sized = False
        """It has a Content-Length."""
        self._in_head = False
        self._read_bytes = 0
        """The size of the read being parsed."""
        self._head_read = 0
        """The bytes of the reads after which the current head was still incomplete (one that never ends)."""
        self._informational = False

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        receiver = self.receiver
        if receiver is None:  # bytes on an idle connection: it cannot carry the next request
            self.abort()
            return
        self.now = time.monotonic_ns()
        self._read_bytes = len(data)
        try:
            self.parser.feed_data(data)
            if self._in_head:  # all of this read is the head's (a field that never ends included)
                self._head_read += len(data)
                if self._head_read > MAX_HEAD_BYTES:
                    raise _HeadTooBig
        except _HeadTooBig:
            self.keep, self.receiver = False, None
            receiver.upstream_bad(f"answer head over {MAX_HEAD_BYTES} bytes")
            return
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooBig):
                self.keep, self.receiver = False, None
                receiver.upstream_bad(f"answer head over {MAX_HEAD_BYTES} bytes")
                return
            if isinstance(exc.__context__, _BadFraming):
                self.keep, self.receiver = False, None
                receiver.upstream_bad(str(exc.__context__))
                return
            if not isinstance(exc.__context__, _NoBody):
                raise  # a bug: asyncio logs it and drops this connection only
            self.keep, self.receiver = False, None
            receiver.response_end()
        except httptools.HttpParserError as exc:
            self.keep = False
            if self.receiver is None:  # bytes after a whole answer (more than its Content-Length): it stands
                self.abort()
            else:
                self.receiver = None
                receiver.upstream_bad(str(exc) or type(exc).__name__)
                return
        receiver.upstream_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.upstream_lost()

    def pause_writing(self) -> None:
        if self.receiver is not None:
            self.receiver.upstream_writable(False)

    def resume_writing(self) -> None:
        if self.receiver is not None:
            self.receiver.upstream_writable(True)

    # llhttp's side
    def on_message_begin(self) -> None:
        if self.receiver is None:  # bytes after the answer: the connection cannot carry the next request
            self.keep = False
            self.abort()
            return
        self._fields, self._te, self._connection, self._reason = [], [], [], b""
        self._sized = self.keep = False
        self._in_head, self._head_read = True, 0

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))
        if len(name) in _WATCHED_LENGTHS:  # the length first: most names end there
            lower = name.lower()
            if lower == b"transfer-encoding":
                self._te.append(value)
            elif lower == b"content-length":
                self._sized = True
            elif lower == b"connection":
                self._connection.append(value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if wire.head_over_limit(self._head_read, self._read_bytes, self._reason, self._fields):
            raise _HeadTooBig
        status = self.parser.get_status_code()
        self._informational = 100 <= status < 200  # 1xx (103 Early Hints) are not passed on
        if not self._informational and self.receiver is not None:
            if self._te and not self.no_body and status not in NO_BODY_STATUS:
                unsupported = hdr.unsupported_coding(self._te)
                if unsupported is not None:  # its body would reach the client still coded, undeclared
                    raise _BadFraming(unsupported)
                if self.parser.get_http_version() == "1.0":  # RFC 9112 §6.1: faulty framing
                    raise _BadFraming("Transfer-Encoding in an HTTP/1.0 answer")
            self.receiver.response_head(
                status, self._reason or b"", self._fields, bool(self._te), self._sized, self._connection
            )
            if self.no_body:
                raise _NoBody

    def on_body(self, body: bytes) -> None:
        if self.receiver is not None:
            self.receiver.response_body(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
        elif self.receiver is not None:
            self.keep = self.parser.should_keep_alive()
            receiver, self.receiver = self.receiver, None  # the answer is complete: nothing more is its
            receiver.response_end()

    # the exchange's side
    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def pause_reading(self, pause: bool) -> None:
        if self.transport is None or self.transport.is_closing() or pause is not self.reading:
            return
        self.reading = not pause
        if pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection at once (RST where the OS does that), discarding unsent bytes."""
        self.receiver = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def cut(self) -> None:
        """Drop the connection at once, its exchange told (`upstream_lost`)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()


class Upstream:
    def __init__(self, address: Address, connect_timeout_s: float = 5.0, tls: ssl.SSLContext | None = None):
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.tls = tls if tls is not None or address.scheme == "http" else ssl.create_default_context()
        self._idle: list[tuple[float, UpstreamConn]] = []
        self.authority = address.authority
        """The Host field sent upstream."""
        self.prefix = address.prefix.encode()

    def idle(self) -> UpstreamConn | None:
        """A kept connection fit for reuse, or None."""
        now = time.monotonic()
        while self._idle:
            since, conn = self._idle.pop()
            if now - since < IDLE_S and conn.usable():
                return conn
            conn.abort()
        return None

    async def connect(self) -> UpstreamConn:
        a = self.address
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    UpstreamConn, a.host, a.port, ssl=self.tls, server_hostname=a.host if self.tls else None
                ),
                self.connect_timeout_s,
            )
        except asyncio.TimeoutError:
            raise UpstreamError("timeout", f"no connection to {a} within {self.connect_timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise UpstreamError("tls", f"TLS with {a} failed: {exc.reason or exc}") from None
        except ConnectionRefusedError:
            raise UpstreamError("refused", f"{a} refused the connection") from None
        except OSError as exc:
            raise UpstreamError("unreachable", f"{a}: {exc.strerror or exc}") from None
        return conn

    def release(self, conn: UpstreamConn) -> None:
        """Keep a connection whose exchange finished cleanly for the next request; close any other."""
        conn.receiver = None
        conn.no_body = False
        if len(self._idle) < MAX_IDLE and conn.keep and conn.usable():
            conn.pause_reading(False)  # an idle connection reads: what it gets (a close) makes it unfit
            self._idle.append((time.monotonic(), conn))
        else:
            conn.abort()

    def close(self) -> None:
        for _, conn in self._idle:
            conn.abort()
        self._idle.clear()
