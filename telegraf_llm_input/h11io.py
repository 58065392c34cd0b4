"""HTTP/1.1 messages on asyncio streams, parsed and written by h11 (the sans-I/O parser httpx itself uses).

Why a module: the scrape client (`http11`), the Prometheus page's server (`sinks/prometheus`) and a proxy all
need the same few steps between an `h11.Connection` and a socket: feed it what arrives, write what it makes,
and know when a kept connection is clean enough to carry the next message. No HTTP is parsed here by hand.

- `open_connection(...)` -> (`Reader`, `StreamWriter`): as `asyncio.open_connection`, with a `Reader` that counts
  the bytes that arrived (`arrived`) and those not read yet (`unread`): an idle kept connection that received anything (an
  answer nobody asked for, a `408` before the close) must not carry the next request.
- `await receive(conn, reader)` -> the next h11 event (never `NEED_DATA`), reading as h11 asks for more.
- `send(conn, writer, *events)`: what h11 makes of the events, written (not drained).
- `clean(conn, reader)`: both sides done with this message (and, for a client, nothing left over): next cycle.
- `await serve(reader, writer, respond, ...)`: a keep-alive server connection for small whole-body answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import h11

if TYPE_CHECKING:
    import ssl  # loaded by whoever makes a TLS context (tlsgate)

READ_BYTES = 65536
"""One read from the socket at most (also the StreamReader's flow-control limit)."""
MAX_HEAD_BYTES = 65536
"""A message's head (start line and header fields) at most: a lying peer cannot grow memory."""


class Reader(asyncio.StreamReader):
    """A StreamReader that counts the bytes that arrived (`arrived`) and those not taken by `read()` yet (`unread`).

    Only `read()` is counted: `receive` is the one reader of a connection made by `open_connection`."""

    def __init__(self, limit: int = READ_BYTES) -> None:
        super().__init__(limit=limit)
        self.arrived = 0
        self.unread = 0

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # typeshed says Iterable[SupportsIndex]
        self.arrived += len(data)
        self.unread += len(data)
        super().feed_data(data)

    async def read(self, n: int = -1) -> bytes:
        data = await super().read(n)
        self.unread -= len(data)
        return data


async def open_connection(
    host: str, port: int, tls: ssl.SSLContext | None = None
) -> tuple[Reader, asyncio.StreamWriter]:
    """`asyncio.open_connection` with a counting `Reader` (the same four steps it takes)."""
    loop = asyncio.get_running_loop()
    reader = Reader()
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.create_connection(
        lambda: protocol, host, port, ssl=tls, server_hostname=host if tls else None
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def receive(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event | type[h11.PAUSED]:
    """The next event h11 reads from the stream (an ended stream is given to h11 as the end of the data).

    Raises `h11.RemoteProtocolError` for anything h11 refuses (a bad head, a bad framing, a head over the limit,
    the peer closing inside a message) and the stream's own `ConnectionError`s."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return cast("h11.Event | type[h11.PAUSED]", event)  # mypy does not narrow on h11's sentinel classes
        conn.receive_data(await reader.read(READ_BYTES))


def send(conn: h11.Connection, writer: asyncio.StreamWriter, *events: h11.Event) -> None:
    """Write what h11 makes of `events` (raises `h11.LocalProtocolError` for an event it refuses)."""
    for event in events:
        data = conn.send(event)
        if data:
            writer.write(data)


def clean(conn: h11.Connection, reader: Reader | None = None) -> bool:
    """Whether the connection can carry the next message: both sides done with this one and neither closing (then
    h11 is set for the next cycle). With `reader` (a client's kept connection), also not a byte more received, by
    h11 or the reader: a server that sent what nobody asked for would answer the next request with it."""
    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
        return False
    if reader is not None and (conn.trailing_data[0] or reader.unread):
        return False
    conn.start_next_cycle()
    return True


@dataclass(frozen=True)
class Reply:
    """A whole answer of a small server: status, header fields (name, value), body."""

    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


async def serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    respond: Callable[[h11.Request], Reply],
    *,
    idle_s: float = 30.0,
    max_body: int = 65536,
) -> None:
    """Answer requests on one connection until either side closes it or it idles for `idle_s`.

    A request's head is bounded by MAX_HEAD_BYTES and its body (read and dropped) by `max_body`; a request h11
    refuses or one too big gets its 4xx and the connection closes. `respond` gets the request head only.
    Closes the writer at the end."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    try:
        while True:
            request = await asyncio.wait_for(_request(conn, reader, max_body), idle_s)
            if request is None:
                return
            refused = isinstance(request, Reply)
            reply = request if isinstance(request, Reply) else respond(request)
            head_only = isinstance(request, h11.Request) and request.method == b"HEAD"
            headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
            if refused:
                headers.append(("Connection", "close"))
            send(conn, writer, h11.Response(status_code=reply.status, headers=headers))
            if reply.body and not head_only:
                send(conn, writer, h11.Data(data=reply.body))
            send(conn, writer, h11.EndOfMessage())
            await writer.drain()
            if refused:
                await _linger(reader, writer)
            if not clean(conn):
                return
    except (asyncio.TimeoutError, ConnectionError, h11.ProtocolError):
        pass
    finally:
        writer.close()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close in stages (RFC 9112 9.6) after refusing a request the peer may still be sending: stop writing, then
    drop what still arrives for a moment, so the peer reads our 4xx before any reset."""
    if writer.can_write_eof():
        writer.write_eof()
    left = 4 * MAX_HEAD_BYTES
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
        while left > 0 and (data := await asyncio.wait_for(reader.read(READ_BYTES), 1.0)):
            left -= len(data)


async def _request(conn: h11.Connection, reader: asyncio.StreamReader, max_body: int) -> h11.Request | Reply | None:
    """The next request's head, its body read and dropped; a `Reply` (4xx) for one h11 refuses or one too big;
    None when the peer closed between requests."""
    try:
        event = await receive(conn, reader)
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed (or PAUSED: nothing more will be read)
        size = 0
        while not isinstance(body := await receive(conn, reader), h11.EndOfMessage):
            if isinstance(body, h11.Data):
                size += len(body.data)
                if size > max_body:
                    return Reply(413, [("Content-Type", "text/plain")], b"request body too large\n")
        return event
    except h11.RemoteProtocolError as exc:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            raise
        return Reply(exc.error_status_hint, [("Content-Type", "text/plain")], b"bad request\n")
