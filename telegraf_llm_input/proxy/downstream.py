"""A client's connection to the proxy: its requests parsed by llhttp (httptools) as bytes arrive, each handed
to a `Handler` (a forwarded exchange or the page), one at a time.

A request that comes while the one before is still answered (pipelining) waits with what arrived of it and
the connection stops reading meanwhile. Reading also stops while a handler says so (`pause`: the upstream
cannot take the body as fast): TCP back-pressure. The client's EOF or reset reaches the handler at once
(`client_gone`): that is how a model server learns to stop generating.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Protocol, cast

import httptools

from telegraf_llm_input.proxy import headers as hdr, wire
from telegraf_llm_input.proxy.wire import DISCARD_S, MAX_HEAD_BYTES, Request


class Handler(Protocol):
    """What answers one request; called back as its body arrives (see `ClientConn`)."""

    def request_body(self, data: bytes) -> None: ...
    def request_end(self) -> None: ...
    def client_flush(self) -> None:
        """After each read: what it brought can go on now (one write per read)."""
        ...

    def client_gone(self) -> None: ...
    def client_writable(self, ok: bool) -> None:
        """The client's send buffer is over (False) or back under (True) its high-water mark."""
        ...


class Refused(Exception):
    """A request the proxy answers itself with an error, before any of it goes upstream."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large", 501: b"Not Implemented"}


def _head_too_big() -> Refused:
    return Refused(431, f"request head over {MAX_HEAD_BYTES} bytes")


_WATCHED_LENGTHS = frozenset({len(b"transfer-encoding"), len(b"connection"), len(b"expect")})


def error_body(kind: str, message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind}}).encode() + b"\n"


class ClientConn(asyncio.Protocol):
    def __init__(self, start: Callable[[ClientConn, Request], Handler], conns: set[ClientConn]) -> None:
        self.start = start
        self.conns = conns
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.handler: Handler | None = None
        self.now = 0
        """When the current read arrived (monotonic ns)."""
        self.writable = True
        """The send buffer is under its high-water mark."""
        self._waiting: list[tuple[Request, list[bytes | None]]] = []
        """Pipelined requests and what arrived of their bodies (None: the end)."""
        self._paused: set[str] = set()
        self._target = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._te: list[bytes] = []
        """The Transfer-Encoding field values of the request being read."""
        self._connection: list[bytes] = []
        """Its Connection field values (the fields they name stop here too)."""
        self._expect: bytes | None = None
        self._read_bytes = 0
        """The size of the read being parsed."""
        self._head_read = 0
        """The bytes of the reads after which the current head was still incomplete (one that never ends)."""
        self._in_head = False
        self._refused = False
        """An error answer was sent: what the client still sends is dropped until the connection closes."""

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self.conns.add(self)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self.now = time.monotonic_ns()
        self._read_bytes = len(data)
        try:
            self.parser.feed_data(data)
            if self._in_head:  # all of this read is the head's: two counts, so that neither counts a byte twice
                self._head_read += len(data)
                if self._head_read > MAX_HEAD_BYTES:
                    raise _head_too_big()
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, Refused):
                raise  # a bug: asyncio logs it and drops this connection only
            self._refuse(exc.__context__.status, str(exc.__context__))
            return
        except Refused as exc:
            self._refuse(exc.status, str(exc))
            return
        except httptools.HttpParserError as exc:
            self._refuse(400, f"bad HTTP request: {exc}")
            return
        if self.handler is not None:
            self.handler.client_flush()

    def eof_received(self) -> bool:
        self._gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.discard(self)
        self._gone()

    def pause_writing(self) -> None:
        self.writable = False
        if self.handler is not None:
            self.handler.client_writable(False)

    def resume_writing(self) -> None:
        self.writable = True
        if self.handler is not None:
            self.handler.client_writable(True)

    # llhttp's side
    def on_message_begin(self) -> None:
        self._in_head, self._head_read, self._fields, self._te = True, 0, [], []
        self._connection, self._expect = [], None

    def on_url(self, url: bytes) -> None:
        self._target = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))
        if len(name) in _WATCHED_LENGTHS:  # the length first: most names end there
            lower = name.lower()
            if lower == b"transfer-encoding":
                self._te.append(value)
            elif lower == b"connection":
                self._connection.append(value)
            elif lower == b"expect" and self._expect is None:
                self._expect = value

    def on_headers_complete(self) -> None:
        self._in_head = False
        if wire.head_over_limit(self._head_read, self._read_bytes, self._target, self._fields):
            raise _head_too_big()
        p, te, expect = self.parser, self._te, self._expect
        http10 = p.get_http_version() == "1.0"
        if te:  # RFC 9112 §6.1, §6.3: a coding not understood 501, chunked not last 400, HTTP/1.0's faulty 400
            unsupported = hdr.unsupported_coding(te)
            if unsupported is not None:
                raise Refused(501 if hdr.codings(te)[-1] == b"chunked" else 400, unsupported)
            if http10:
                raise Refused(400, "Transfer-Encoding in an HTTP/1.0 request")
        request = Request(
            p.get_method(), self._target, self._fields, p.should_keep_alive(), http10, bool(te),
            not http10 and expect is not None and expect.lower() == b"100-continue", self.now, self._connection,
        )  # fmt: skip  # an HTTP/1.0 client's expectation is ignored (RFC 9110 §10.1.1)
        if self.handler is None:
            self.handler = self.start(self, request)
        else:
            self._waiting.append((request, []))
            self.pause("pipelined")

    def on_body(self, body: bytes) -> None:
        if self._waiting:
            self._waiting[-1][1].append(body)
        elif self.handler is not None:
            self.handler.request_body(body)

    def on_message_complete(self) -> None:
        if self._waiting:
            self._waiting[-1][1].append(None)
        elif self.handler is not None:
            self.handler.request_end()

    # the handler's side
    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def done(self, handler: Handler, close: bool) -> None:
        """`handler` answered: the next request (one waiting, or the next to arrive), or the connection closed."""
        if handler is not self.handler:
            return
        self.handler = None
        if close:
            self.close()
            return
        while self._waiting and self.handler is None:
            request, body = self._waiting.pop(0)
            self.handler = handler = self.start(self, request)
            for piece in body:
                if piece is None:
                    handler.request_end()
                else:
                    handler.request_body(piece)
            handler.client_flush()
        if not self._waiting:
            self.resume("pipelined")

    def pause(self, reason: str) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._paused:
            self._paused.discard(reason)
            if not self._paused and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def close(self) -> None:
        """Close once what is written has been sent."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (RST where the OS does that), discarding unsent bytes."""
        if self.transport is not None:
            self.transport.abort()

    def _gone(self) -> None:
        handler, self.handler = self.handler, None
        self._waiting.clear()
        if handler is not None:
            handler.client_gone()

    def _refuse(self, status: int, message: str) -> None:
        """A request llhttp could not read: a short error answer, then the connection closed."""
        handler, self.handler = self.handler, None
        if handler is not None:  # mid-body: the exchange cannot go on
            handler.client_gone()
            self.abort()
            return
        head = [(b"content-type", b"application/json"), (b"connection", b"close")]
        kind = "not_implemented" if status == 501 else "bad_request"
        self.write(wire.answer(status, REASONS[status], head, error_body(kind, message)))
        self._linger()

    def _linger(self) -> None:
        """Close once the answer is sent, the rest of the request read and dropped until the client closes (at
        most DISCARD_S): closing with its body still arriving would reset the connection, the answer lost."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._refused = True
        self._paused.clear()
        transport.resume_reading()
        transport.write_eof()
        asyncio.get_running_loop().call_later(DISCARD_S, self.close)
