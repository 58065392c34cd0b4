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
from telegraf_llm_input.proxy.wire import MAX_HEAD_BYTES, Request


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


class HeadTooBig(Exception):
    pass


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
        self._head_bytes = 0
        self._in_head = False

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is none of asyncio's classes
        self.conns.add(self)

    def data_received(self, data: bytes) -> None:
        self.now = time.monotonic_ns()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
                raise HeadTooBig
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, HeadTooBig):
                raise  # a bug: asyncio logs it and drops this connection only
            self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes")
            return
        except HeadTooBig:
            self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes")
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
        self._in_head, self._head_bytes, self._fields = True, 0, []

    def on_url(self, url: bytes) -> None:
        self._target = url
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise HeadTooBig

    def on_headers_complete(self) -> None:
        self._in_head = False
        p, fields = self.parser, self._fields
        expect = hdr.value(fields, b"expect")
        request = Request(
            p.get_method(), self._target, fields, p.should_keep_alive(), p.get_http_version() == "1.0",
            hdr.chunked(fields), expect is not None and expect.lower() == b"100-continue", self.now,
        )  # fmt: skip
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
        reason = b"Bad Request" if status == 400 else b"Request Header Fields Too Large"
        head = [(b"content-type", b"application/json"), (b"connection", b"close")]
        self.write(wire.answer(status, reason, head, error_body("bad_request", message)))
        self.close()
