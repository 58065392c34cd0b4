"""One HTTP/1.1 connection as h11 events over asyncio streams: the proxy's only HTTP framing.

h11 parses and frames (request/status lines, headers, chunked and Content-Length bodies, keep-alive
rules); this class only moves bytes between it and the socket. Writes wait for the socket's buffer to
drain (back-pressure), reads take what the socket has (at most READ_BYTES at a time), so a connection
holds at most a few buffers whatever the body's size.
"""

from __future__ import annotations

import asyncio

import h11

READ_BYTES = 65536
MAX_HEAD = 64 * 1024
"""Longest request/response head accepted (h11's own default is 16 KiB; long cookies and tokens exist)."""


class Closed(Exception):
    """The peer closed the connection (or reset it) before the message was complete."""


class ClientGone(Closed):
    """The client side of the proxy closed."""


class UpstreamClosed(Closed):
    """The upstream side of the proxy closed."""


class H11Stream:
    __slots__ = ("conn", "reader", "writer", "eof", "closed")

    def __init__(
        self,
        role: type[h11.CLIENT] | type[h11.SERVER],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        closed: type[Closed] = Closed,
    ):
        self.conn = h11.Connection(role, max_incomplete_event_size=MAX_HEAD)
        self.closed = closed
        """The exception this side raises when its peer goes away."""
        self.reader = reader
        self.writer = writer
        self.eof = False

    async def next_event(self):
        """The next h11 event, reading from the socket as needed. Raises Closed on EOF or reset mid-message,
        h11.RemoteProtocolError on bad HTTP. A clean EOF between messages is h11's ConnectionClosed event."""
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self.eof:
                    raise self.closed(
                        str(exc)
                    ) from exc  # "peer closed connection without sending complete message body"
                raise
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.reader.read(READ_BYTES)
            except (ConnectionError, OSError) as exc:
                raise self.closed(str(exc) or type(exc).__name__) from exc
            self.eof = not data
            self.conn.receive_data(data)

    def write(self, event) -> None:
        """Queue an event's bytes without waiting (the caller drains)."""
        data = self.conn.send(event)
        if data:
            self.writer.write(data)

    async def send(self, event) -> None:
        """Send one event and wait until the socket's buffer is below its high-water mark."""
        self.write(event)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise self.closed(str(exc) or type(exc).__name__) from exc

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
