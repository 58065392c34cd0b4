"""One HTTP/1.1 connection of the proxy (a client's or the upstream's) as h11 events over asyncio streams.

h11 parses and frames (request/status lines, headers, chunked and Content-Length bodies, keep-alive rules);
the bytes move between it and the socket here. What this adds for a proxy: which side went away (a
`Closed` subclass per side, so an exchange knows whom to blame) and an abort that drops a connection at once.
Writes wait for the socket's buffer to drain (back-pressure); reads take at most READ_BYTES at a time, so a
connection holds at most a few buffers whatever the body's size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import h11

from telegraf_llm_input import h11io
from telegraf_llm_input.h11io import MAX_HEAD_BYTES, READ_BYTES

__all__ = ["READ_BYTES", "Closed", "ClientGone", "ClientReader", "UpstreamClosed", "H11Stream"]


class Closed(Exception):
    """The peer closed the connection (or reset it) before the message was complete."""


class ClientGone(Closed):
    """The client side of the proxy closed."""


class UpstreamClosed(Closed):
    """The upstream side of the proxy closed."""


class ClientReader(h11io.Reader):
    """A client connection's reader that says at once when the client went away (EOF or reset) while `on_gone` is
    set: the proxy learns it while an answer streams without a task reading the socket. Bytes a client sends ahead
    (a pipelined request) stay here for the next cycle; an EOF behind them is not a client gone mid-answer."""

    def __init__(self, limit: int = READ_BYTES) -> None:
        super().__init__(limit)
        self.on_gone: Callable[[], None] | None = None

    def watch(self, on_gone: Callable[[], None] | None) -> None:
        """Call `on_gone` when the client goes away from now on (at once if it has); None: stop watching."""
        self.on_gone = on_gone
        if on_gone is not None and self._gone():
            on_gone()

    def _gone(self) -> bool:
        return (self.at_eof() or self.exception() is not None) and not self.unread

    def feed_eof(self) -> None:
        super().feed_eof()
        if self.on_gone is not None and self._gone():
            self.on_gone()

    def set_exception(self, exc: Exception) -> None:
        super().set_exception(exc)
        if self.on_gone is not None and self._gone():
            self.on_gone()


class H11Stream:
    __slots__ = ("conn", "reader", "writer", "closed", "_out")

    def __init__(
        self,
        role: type[h11.CLIENT] | type[h11.SERVER],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        closed: type[Closed] = Closed,
    ):
        self.conn = h11.Connection(role, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.reader = reader
        self.writer = writer
        self.closed = closed
        """The exception this side raises when its peer goes away."""
        self._out: list[bytes] = []
        """Bytes written but not yet handed to the transport: one `send` system call for what one read made."""

    async def next_event(self, flush: H11Stream | None = None) -> h11.Event | type[h11.PAUSED]:
        """The next h11 event, reading from the socket as needed. Raises `closed` on EOF or reset mid-message,
        h11.RemoteProtocolError on bad HTTP. A clean EOF between messages is h11's ConnectionClosed event.

        `flush`: the other side, whose queued bytes are sent (and drained) before this one waits for a read: what
        one read brought goes on in one write, and a slow reader there still holds this side back."""
        try:
            conn = self.conn
            while True:
                event = conn.next_event()
                if event is not h11.NEED_DATA:
                    return cast("h11.Event | type[h11.PAUSED]", event)  # mypy does not narrow on h11's sentinels
                if flush is not None and flush._out:
                    await flush.drain()
                conn.receive_data(await self.reader.read(READ_BYTES))
        except h11.RemoteProtocolError as exc:
            if self.reader.at_eof():  # "peer closed connection without sending complete message body"
                raise self.closed(str(exc)) from exc
            raise
        except (ConnectionError, OSError) as exc:
            raise self.closed(str(exc) or type(exc).__name__) from exc

    def write(self, event: h11.Event) -> None:
        """Queue an event's bytes without sending them (`drain`, `send` or a `next_event(flush=)` does)."""
        data = self.conn.send(event)
        if data:
            self._out.append(data)

    async def drain(self) -> None:
        """Hand what is queued to the socket in one write and wait until its buffer is below its high-water mark."""
        out = self._out
        if out:
            self.writer.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise self.closed(str(exc) or type(exc).__name__) from exc

    async def send(self, event: h11.Event) -> None:
        """Send one event (with anything queued before it) and wait for the socket's buffer to drain."""
        self.write(event)
        await self.drain()

    def reusable(self) -> bool:
        """Both sides finished a message and keep-alive holds: ready for the next cycle."""
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    def abort(self) -> None:
        """Drop the connection at once (RST where the OS does that), discarding unsent bytes."""
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
