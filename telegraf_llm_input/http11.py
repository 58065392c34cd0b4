"""Keep-alive HTTP/1.1 GETs for scrapes: asyncio streams, h11 for the framing, a few idle connections per origin.

Why not httpx on this path: a scrape is one small GET, and httpx's layers (client, httpcore pool, anyio streams)
cost ~0.6 ms CPU per request where the socket work itself is ~0.1 ms (`python -m bench http`); with five requests
a gather, the agent cost more than parsing the page. h11, the HTTP/1.1 state machine httpx itself speaks, still
does what is easy to get wrong: content-length, chunked and close-delimited bodies, keep-alive rules, header
validation. httpx stays for the probe's streaming POST and the InfluxDB sink.

What a caller gets: `await client.get(target, headers, limit, reject)` -> `Answer` (status, headers, whole
body, decoded from gzip/deflate, at most `limit` bytes after decoding). Failures raise `ConnectFailed`,
`Broken`, `TooBig`, `Rejected` (a status the caller does not accept, raised before the body is read) or
`ssl.SSLError`; timeouts are the caller's (`asyncio.wait_for`): a cancelled request closes its connection.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import h11

from telegraf_llm_input import __version__

USER_AGENT = f"telegraf-llm-input/{__version__}"
READ_BYTES = 65536
MAX_IDLE = 8
"""Idle connections kept per origin: a gather asks one target for a few paths at once."""
KEEPALIVE_S = 60.0
"""An idle connection older than this is closed rather than reused (servers drop theirs after 5-75 s)."""


class ConnectFailed(Exception):
    """No connection (refused, no route, name not found); the OSError is the cause."""


class Broken(Exception):
    """The connection closed or spoke bad HTTP before the answer was complete."""


class TooBig(Exception):
    """The body (after decoding) is over the caller's limit; `declared` when Content-Length said so up front."""

    def __init__(self, declared: int | None = None):
        super().__init__(declared)
        self.declared = declared


class Rejected(Exception):
    """A status the caller does not accept; the body is not read."""

    def __init__(self, status: int, reason: str):
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: Mapping[str, str]
    """Lower-case names; a repeated header's values joined with ", "."""
    body: bytearray


class _Conn:
    __slots__ = ("reader", "writer", "http", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing()) and now - self.idle_since < KEEPALIVE_S

    def close(self) -> None:
        self.writer.close()


def _decoder(encoding: str) -> Callable[[bytes, int], bytes] | None:
    """A chunk decoder for Content-Encoding (the two we ask for), None for identity or anything else.

    Each call is given the room left and returns at most one byte more, so a gzip bomb stops at the cap."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib-wrapped, as the RFC says; raw deflate below
    else:
        return None
    raw = [False]

    def decode(chunk: bytes, room: int) -> bytes:
        nonlocal inflate
        try:
            return inflate.decompress(chunk, room + 1)
        except zlib.error:
            if encoding != "deflate" or raw[0]:
                raise Broken(f"bad {encoding} body") from None
            raw[0] = True  # some servers send raw deflate under that name
            inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                return inflate.decompress(chunk, room + 1)
            except zlib.error:
                raise Broken(f"bad {encoding} body") from None

    return decode


class Client:
    """Idle connections to one origin (scheme, host, port), reused request after request."""

    def __init__(self, url: str, tls: ssl.SSLContext | None):
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = tls if parts.scheme == "https" else None
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if parts.scheme == "https" else 80
        self.authority = host if parts.port in (None, default) else f"{host}:{self.port}"
        self.basic = (
            "Basic " + base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
            if parts.username is not None
            else None
        )
        self._idle: list[_Conn] = []
        self.closed = False

    def request_head(self, target: str, headers: Mapping[str, str]) -> list[tuple[str, str]]:
        """The request's header lines: ours, then the target's own (which replace ours of the same name)."""
        given = {name.lower() for name in headers}
        base = [
            ("Host", self.authority),
            ("Accept", "*/*"),
            ("Accept-Encoding", "gzip, deflate"),
            ("User-Agent", USER_AGENT),
        ]
        if self.basic and "authorization" not in given:
            base.append(("Authorization", self.basic))
        return [(k, v) for k, v in base if k.lower() not in given] + list(headers.items())

    async def get(
        self, target: str, headers: Mapping[str, str], limit: int, reject: Callable[[int], bool] = lambda s: False
    ) -> Answer:
        """GET `target` (path and query). A reused connection that turns out closed is retried once on a new one:
        the server may have dropped it while idle, before our request reached it."""
        head = self.request_head(target, headers)
        conn = self._take()
        if conn is not None:
            try:
                return await self._exchange(conn, target, head, limit, reject)
            except _Stale:
                pass
        conn = await self._connect()
        try:
            return await self._exchange(conn, target, head, limit, reject)
        except _Stale:
            raise Broken("connection closed before an answer") from None

    def _take(self) -> _Conn | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None, limit=READ_BYTES
            )
        except ssl.SSLError:
            raise
        except OSError as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        return _Conn(reader, writer)

    async def _exchange(
        self, conn: _Conn, target: str, head: list[tuple[str, str]], limit: int, reject: Callable[[int], bool]
    ) -> Answer:
        keep = False
        got_any = False
        try:
            http = conn.http
            conn.writer.write(
                http.send(h11.Request(method="GET", target=target, headers=head)) + http.send(h11.EndOfMessage())
            )
            response: h11.Response | None = None
            decode: Callable[[bytes, int], bytes] | None = None
            body = bytearray()
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    data = await conn.reader.read(READ_BYTES)
                    if data:
                        got_any = True
                    elif not got_any:
                        raise _Stale
                    http.receive_data(data)
                    continue
                if isinstance(event, h11.Response):
                    response = event
                    headers = _headers(list(event.headers))
                    if reject(event.status_code):
                        raise Rejected(event.status_code, event.reason.decode("latin-1"))
                    declared = headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise TooBig(int(declared))
                    decode = _decoder(headers.get("content-encoding", ""))
                elif isinstance(event, h11.Data):
                    room = limit - len(body)
                    chunk = decode(event.data, room) if decode else event.data
                    if len(chunk) > room:
                        raise TooBig()
                    body += chunk
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise Broken("connection closed before the answer was complete")
                # InformationalResponse (1xx): read on
            assert response is not None
            keep = http.our_state is h11.DONE and http.their_state is h11.DONE
            return Answer(response.status_code, response.reason.decode("latin-1"), headers, body)
        except h11.RemoteProtocolError as exc:
            raise Broken(f"bad HTTP from the server ({exc})") from None
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            if not got_any:
                raise _Stale from None
            raise Broken(type(exc).__name__) from None
        finally:
            if keep and not self.closed and len(self._idle) < MAX_IDLE:
                conn.http.start_next_cycle()
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()

    async def aclose(self) -> None:
        self.closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            try:
                await asyncio.wait_for(conn.writer.wait_closed(), 1.0)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass


class _Stale(Exception):
    """The connection was closed before any byte of the answer: safe to send the GET again."""


def _headers(pairs: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.decode("latin-1")  # h11 gives names lower-cased
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out
