"""Keep-alive HTTP/1.1 GETs for scrapes: h11 on asyncio streams, a few idle connections per origin.

Why not httpx on this path: a scrape is one small GET, and httpx's layers (client, httpcore pool, anyio streams)
cost ~0.6 ms CPU per request where the socket work and h11's parsing are ~0.15 ms (`python -m bench scrape_client`);
with five requests a gather, the agent cost more than parsing the page. So the answer is parsed by h11 (the
parser httpx itself uses: strict, a bad framing ends the connection instead of guessing) over plain asyncio
streams (`h11io`), and the pool, the request cache and the body decoder are ours. httpx stays for the probe's
streaming POST and the InfluxDB sink.

What a caller gets: `await client.get(target, headers, limit, reject, url)` -> `Response` (status, headers, whole
body, decoded from gzip/deflate, at most `limit` bytes on the wire and after decoding). Failures raise
`ConnectFailed`, `Broken`, `TooBig`, `Rejected` (a status the caller does not accept, raised before the body is
read), `ValueError` (a configured header h11 refuses) or `ssl.SSLError`; timeouts are the caller's
(`asyncio.timeout`): a cancelled request closes its connection.

A kept connection carries the next request only when h11 says both sides are done and not a byte more arrived,
then or while it sat idle (an answer nobody asked for would answer the next request). A reused connection that
the server had closed, reset or answered with `408` (RFC 9110 15.5.9: it timed the idle connection out) before
any byte of our answer is stale: the GET goes again once, on a new connection.
"""

from __future__ import annotations

import asyncio
import base64
import json as jsonlib
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import h11

from telegraf_llm_input import __version__, h11io, tlsgate
from telegraf_llm_input.errors import FetchError

if TYPE_CHECKING:
    import ssl  # loaded by whoever makes a TLS context (tlsgate)

USER_AGENT = f"telegraf-llm-input/{__version__}"
MAX_IDLE = 8
"""Idle connections kept per origin: a gather asks one target for a few paths at once."""
KEEPALIVE_S = 60.0
"""An idle connection older than this is closed rather than reused (servers drop theirs after 5-75 s)."""
_END = h11.EndOfMessage()


class ConnectFailed(Exception):
    """No connection (refused, no route, name not found); the OSError is the cause."""


class Broken(Exception):
    """The connection closed or spoke bad HTTP before the answer was complete."""


class TooBig(Exception):
    """The body is over the caller's limit; `declared` when Content-Length said so up front."""

    def __init__(self, declared: int | None = None) -> None:
        super().__init__(declared)
        self.declared = declared


class Rejected(Exception):
    """A status the caller does not accept; the body is not read."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


class _Stale(Exception):
    """A reused connection that the server had closed, reset or timed out (408) before any byte of our answer:
    safe to send the GET again."""


@dataclass(frozen=True)
class Response:
    """One whole answer to a GET."""

    status: int
    headers: Mapping[str, str]
    """Lower-case names; a repeated header's values joined with ", "."""
    body: bytes | bytearray
    url: str
    """The URL asked, credentials removed: what error lines name."""

    def text(self) -> str:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FetchError("bad_encoding", f"{self.url}: body is not valid UTF-8 (byte {exc.start})") from None

    def json(self) -> Any:
        try:
            return jsonlib.loads(self.text())
        except ValueError as exc:
            raise FetchError("bad_body", f"{self.url}: body is not JSON ({exc.args[0][:60]})") from None


class _Conn:
    __slots__ = ("reader", "writer", "http", "idle_since", "reused")

    def __init__(self, reader: h11io.Reader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=h11io.MAX_HEAD_BYTES)
        self.idle_since = 0.0
        self.reused = False

    def usable(self, now: float) -> bool:
        """Still open, not too old, and nothing arrived while it was idle."""
        return (
            not (self.reader.unread or self.reader.at_eof() or self.writer.is_closing())
            and now - self.idle_since < KEEPALIVE_S
        )

    def close(self) -> None:
        self.writer.close()


class _Decoder:
    """Content-Encoding gzip or deflate (the two we ask for), chunk by chunk, capped.

    Each call is given the room left and returns at most one byte more, so a gzip bomb stops at the cap; `done`
    says whether the compressed stream ended (a cut-off body with valid HTTP framing is not a whole page)."""

    __slots__ = ("encoding", "inflate", "raw")

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        # zlib-wrapped deflate, as the RFC says; some servers send raw deflate under that name (see __call__)
        self.inflate = zlib.decompressobj((16 if encoding == "gzip" else 32) + zlib.MAX_WBITS)
        self.raw = False

    @staticmethod
    def of(encoding: str) -> _Decoder | None:
        """The decoder of a Content-Encoding value, None for identity or anything else."""
        name = encoding.strip().lower()
        name = "gzip" if name == "x-gzip" else name
        return _Decoder(name) if name in ("gzip", "deflate") else None

    def __call__(self, chunk: bytes | bytearray, room: int) -> bytes:
        try:
            return self.inflate.decompress(chunk, room + 1)
        except zlib.error:
            if self.encoding != "deflate" or self.raw:
                raise Broken(f"bad {self.encoding} body") from None
        self.raw = True
        self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            return self.inflate.decompress(chunk, room + 1)
        except zlib.error:
            raise Broken(f"bad {self.encoding} body") from None

    @property
    def done(self) -> bool:
        return self.inflate.eof


class Client:
    """Idle connections to one origin (scheme, host, port), reused request after request."""

    def __init__(self, url: str, tls: ssl.SSLContext | None) -> None:
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
        self._requests: dict[tuple[object, ...], h11.Request] = {}
        """(target, headers) -> the request, built and checked by h11 once: a target asks for the same few paths."""
        self.closed = False

    def request_head(self, headers: Mapping[str, str]) -> list[tuple[str, str]]:
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

    def request(self, target: str, headers: Mapping[str, str]) -> h11.Request:
        """The GET, from the cache. Raises ValueError (naming no value: it may be a secret) for a header or target
        h11 refuses (a line break, a space, a bad name)."""
        key = (target, *headers.items())
        request = self._requests.get(key)
        if request is None:
            if len(self._requests) >= 64:
                self._requests.clear()
            head = self.request_head(headers)
            try:
                request = h11.Request(method="GET", target=target, headers=head)
            except h11.LocalProtocolError:
                names = ", ".join(name for name, _ in head)
                raise ValueError(f"request refused: the target or a header ({names}) is not valid HTTP") from None
            self._requests[key] = request
        return request

    async def get(
        self,
        target: str,
        headers: Mapping[str, str],
        limit: int,
        reject: Callable[[int], bool] = lambda s: False,
        url: str = "",
    ) -> Response:
        """GET `target` (path and query); `url` is what the Response says was asked."""
        request = self.request(target, headers)
        conn = self._take()
        if conn is not None:
            try:
                return await self._exchange(conn, request, limit, reject, url)
            except _Stale:
                pass
        return await self._exchange(await self._connect(), request, limit, reject, url)

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
            reader, writer = await h11io.open_connection(self.host, self.port, self.tls)
        except OSError as exc:
            if tlsgate.is_tls_error(exc):
                raise
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        return _Conn(reader, writer)

    async def _exchange(
        self, conn: _Conn, request: h11.Request, limit: int, reject: Callable[[int], bool], url: str
    ) -> Response:
        keep = False
        try:
            h11io.send(conn.http, conn.writer, request, _END)
            head = await _head(conn)
            if reject(head.status_code):
                raise Rejected(head.status_code, head.reason.decode("latin-1"))
            headers: dict[str, str] = {}
            for name, value in head.headers:
                key, text = name.decode("latin-1"), value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
            body = await _body(conn, headers, limit)
            keep = h11io.clean(conn.http, conn.reader)
            return Response(head.status_code, headers, body, url)
        except h11.ProtocolError as exc:
            raise Broken(str(exc) or type(exc).__name__) from None
        except ConnectionError as exc:
            raise Broken(type(exc).__name__) from None
        finally:
            if keep and not self.closed and len(self._idle) < MAX_IDLE:
                conn.idle_since = time.monotonic()
                conn.reused = True
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
            except (OSError, asyncio.TimeoutError):  # ssl.SSLError is an OSError
                pass


async def _head(conn: _Conn) -> h11.Response:
    """The final answer's head (1xx interim answers skipped). `_Stale` on a reused connection that ended, was reset
    or said 408 before any byte of the answer."""
    before = conn.reader.arrived
    try:
        while True:
            event = await h11io.receive(conn.http, conn.reader)
            if isinstance(event, h11.Response):
                if conn.reused and event.status_code == 408:
                    raise _Stale
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise Broken("connection closed before an answer")
    except (h11.RemoteProtocolError, ConnectionError):
        if conn.reused and conn.reader.arrived == before:
            raise _Stale from None
        if conn.reader.arrived == before:
            raise Broken("connection closed before an answer") from None
        raise


async def _body(conn: _Conn, headers: Mapping[str, str], limit: int) -> bytearray:
    """The whole body, decoded, at most `limit` bytes on the wire and after decoding (a Content-Length or a chunk
    size over the limit ends it before its bytes are waited for)."""
    length = headers.get("content-length")  # h11 checked it is one number
    if length is not None and int(length) > limit:
        raise TooBig(int(length))
    decode = _Decoder.of(headers.get("content-encoding", ""))
    body = bytearray()
    wire = 0
    while True:
        event = await h11io.receive(conn.http, conn.reader)
        if isinstance(event, h11.Data):
            data = event.data
            wire += len(data)
            if wire > limit or (event.chunk_start and not event.chunk_end and wire + _chunk_left(conn.http) > limit):
                raise TooBig()
            room = limit - len(body)
            if decode is not None:
                data = decode(data, room)
            if len(data) > room:
                raise TooBig()
            body += data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise Broken("connection closed inside the body")
    if decode is not None and not decode.done:
        raise Broken(f"{decode.encoding} body cut off")
    return body


def _chunk_left(conn: h11.Connection) -> int:
    """The bytes the chunk being read still declares. h11 knows it but has no API for it (its reader's
    `_bytes_in_chunk`); 0 where that is missing, and the limit is then checked as the bytes arrive."""
    left = getattr(getattr(conn, "_reader", None), "_bytes_in_chunk", 0)
    return left if isinstance(left, int) else 0
