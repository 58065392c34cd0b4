"""Keep-alive HTTP/1.1 GETs for scrapes: asyncio streams and a strict response reader, a few idle connections.

Why not httpx on this path: a scrape is one small GET, and httpx's layers (client, httpcore pool, anyio streams, h11)
cost ~0.6 ms CPU per request where the socket work itself is ~0.1 ms (`python -m bench scrape_client`); with five requests
a gather, the agent cost more than parsing the page. Reading an answer to a GET is a small, closed problem (RFC 9112:
status line, header fields, then the body framed by Transfer-Encoding chunked, Content-Length, or the connection's
close), so it is read here, strictly: anything unusual ends the connection instead of guessing (a bare LF, obs-fold,
conflicting lengths). tests/test_http11.py checks every framing against h11, the reader httpx itself uses. httpx
stays for the probe's streaming POST and the InfluxDB sink.

What a caller gets: `await client.get(target, headers, limit, reject)` -> `Answer` (status, headers, whole
body, decoded from gzip/deflate, at most `limit` bytes after decoding). Failures raise `ConnectFailed`,
`Broken`, `TooBig`, `Rejected` (a status the caller does not accept, raised before the body is read) or
`ssl.SSLError`; timeouts are the caller's (`asyncio.timeout`): a cancelled request closes its connection.
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
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
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
        self._requests: dict[tuple, bytes] = {}
        """(target, headers) -> the request's bytes, built and checked once: a target asks for the same few paths."""
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

    def request(self, target: str, headers: Mapping[str, str]) -> bytes:
        key = (target, *headers.items())
        data = self._requests.get(key)
        if data is None:
            if len(self._requests) >= 64:
                self._requests.clear()
            data = self._requests[key] = request_bytes(target, self.request_head(target, headers))
        return data

    async def get(
        self, target: str, headers: Mapping[str, str], limit: int, reject: Callable[[int], bool] = lambda s: False
    ) -> Answer:
        """GET `target` (path and query). A reused connection that turns out closed is retried once on a new one:
        the server may have dropped it while idle, before our request reached it."""
        request = self.request(target, headers)
        conn = self._take()
        if conn is not None:
            try:
                return await self._exchange(conn, request, limit, reject)
            except _Stale:
                pass
        conn = await self._connect()
        try:
            return await self._exchange(conn, request, limit, reject)
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

    async def _exchange(self, conn: _Conn, request: bytes, limit: int, reject: Callable[[int], bool]) -> Answer:
        keep = False
        try:
            conn.writer.write(request)
            answer, keep = await read_answer(conn.reader, limit, reject)
            return answer
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise Broken(type(exc).__name__) from None
        finally:
            if keep and not self.closed and len(self._idle) < MAX_IDLE:
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


MAX_HEAD_LINES = 128
"""Header fields of one answer at most (each line at most READ_BYTES): a lying server cannot grow memory."""
_NO_BODY = frozenset({204, 304})


def request_bytes(target: str, headers: list[tuple[str, str]]) -> bytes:
    """A GET's bytes. Refuses what would split the request (CR, LF, NUL) or is not a header name."""
    lines = [f"GET {target} HTTP/1.1"]
    for name, value in headers:
        if not name or not _TOKEN.issuperset(name):
            raise ValueError(f"not a header name: {name!r}")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name}: value holds a line break")
        lines.append(f"{name}: {value}")
    if any(c in target for c in " \r\n\0"):
        raise ValueError("request target holds a space or a line break")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


async def _line(reader: asyncio.StreamReader) -> bytes:
    """One CRLF-ended line without its CRLF; a bare LF is refused (RFC 9112 lets a client refuse it)."""
    line = await reader.readuntil(b"\n")
    if line[-2:-1] != b"\r":
        raise Broken("line without CR")
    return line[:-2]


async def read_answer(
    reader: asyncio.StreamReader, limit: int, reject: Callable[[int], bool] = lambda s: False
) -> tuple[Answer, bool]:
    """Read one answer to a GET: (the answer, whether the connection can carry the next request).

    Raises `_Stale` when the connection ends (or is reset) before any byte of it, `Broken` for a bad or cut-off answer,
    `Rejected` (after the head, before the body) when `reject(status)`, `TooBig` past `limit`."""
    try:
        first = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _Stale from None
        raise Broken("connection closed in the status line") from None
    except ConnectionError:  # reset before any byte of the answer (the server had closed it): as good as unsent
        raise _Stale from None
    while True:
        if first[-2:-1] != b"\r":
            raise Broken("line without CR")
        version, status, reason = _status_line(first[:-2])
        headers: dict[str, str] = {}
        for _ in range(MAX_HEAD_LINES):
            line = await _line(reader)
            if not line:
                break
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:] in b" \t" or line[:1] in b" \t":
                raise Broken("bad header line")  # no colon, space before it, or obs-fold
            key = name.decode("latin-1").lower()
            if not _TOKEN.issuperset(key):
                raise Broken("bad header name")
            text = value.strip(b" \t").decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        else:
            raise Broken(f"more than {MAX_HEAD_LINES} header lines")
        if 100 <= status < 200:
            if status == 101:
                raise Broken("the server switched protocols")
            first = await reader.readuntil(b"\n")  # an interim answer (103 Early Hints): the real one follows
            continue
        break
    if reject(status):
        raise Rejected(status, reason)
    keep = version == b"HTTP/1.1" and "close" not in _tokens(headers.get("connection", ""))
    body = bytearray()
    if status in _NO_BODY:
        return Answer(status, reason, headers, body), keep
    decode = _decoder(headers.get("content-encoding", ""))

    def add(chunk: bytes) -> None:
        room = limit - len(body)
        data = decode(chunk, room) if decode else chunk
        if len(data) > room:
            raise TooBig()
        body.extend(data)

    coding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if coding is not None:
        codings = _tokens(coding)
        if not codings or codings[-1] != "chunked":
            await _until_close(reader, add)
            return Answer(status, reason, headers, body), False
        await _chunked(reader, add)
        return Answer(status, reason, headers, body), keep and length is None
    if length is not None:
        values = {v.strip() for v in length.split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise Broken("bad Content-Length")
        left = int(values.pop())
        if left > limit:
            raise TooBig(left)
        await _exactly(reader, left, add, "before the answer was complete")
        return Answer(status, reason, headers, body), keep
    await _until_close(reader, add)
    return Answer(status, reason, headers, body), False


def _status_line(line: bytes) -> tuple[bytes, int, str]:
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise Broken("not an HTTP/1.x status line")
    return version, int(code), reason.decode("latin-1")


def _tokens(value: str) -> list[str]:
    return [t.strip().lower() for t in value.split(",") if t.strip()]


async def _chunked(reader: asyncio.StreamReader, add: Callable[[bytes], None]) -> None:
    while True:
        size_line = await _line(reader)
        size_text = size_line.split(b";", 1)[0].strip(b" \t")
        if not size_text or len(size_text) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
            raise Broken("bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            for _ in range(MAX_HEAD_LINES):  # trailer fields, then the empty line
                if not await _line(reader):
                    return
            raise Broken(f"more than {MAX_HEAD_LINES} trailer lines")
        await _exactly(reader, size, add, "inside a chunk")
        if await _line(reader):
            raise Broken("chunk not followed by CRLF")


async def _exactly(reader: asyncio.StreamReader, size: int, add: Callable[[bytes], None], where: str) -> None:
    """`size` bytes to `add`, as they arrive (the cap is checked on each piece, not at the end)."""
    while size:
        chunk = await reader.read(min(size, READ_BYTES))
        if not chunk:
            raise Broken(f"connection closed {where}")
        size -= len(chunk)
        add(chunk)


async def _until_close(reader: asyncio.StreamReader, add: Callable[[bytes], None]) -> None:
    while chunk := await reader.read(READ_BYTES):
        add(chunk)
