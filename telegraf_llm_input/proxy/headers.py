"""Which header fields cross the proxy (RFC 9110 §7.6.1): end-to-end ones pass unchanged, hop-by-hop ones stop.

Hop-by-hop: Connection and every field it names, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade.
Each side's framing is the proxy's (exchange.py: a chunked body is chunked again on the other side; a
Content-Length passes, the body being the same bytes). `Expect: 100-continue` is answered by the proxy itself,
so it stops too.
Host becomes the upstream's authority (as nginx's default): servers that check it (Ollama) see their own
name. Authorization and every other field pass untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Headers = Sequence[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade"})
REQUEST_ONLY = frozenset({b"expect", b"host"})


def _named_by_connection(headers: Headers) -> set[bytes]:
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
        if token.strip()
    }


def _end_to_end(headers: Headers, also: Iterable[bytes] = ()) -> list[tuple[bytes, bytes]]:
    drop = HOP_BY_HOP | _named_by_connection(headers) | set(also)
    return [(name, value) for name, value in headers if name.lower() not in drop]


def chunked(headers: Headers) -> bool:
    return any(name.lower() == b"transfer-encoding" for name, _ in headers)


def request_headers(headers: Headers, authority: bytes) -> list[tuple[bytes, bytes]]:
    """The fields sent upstream, names spelled as the client did; a chunked request
    body stays chunked."""
    out = [(b"Host", authority), *_end_to_end(headers, REQUEST_ONLY)]
    if chunked(headers):
        out.append((b"Transfer-Encoding", b"chunked"))
    return out


def response_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    """The fields sent back to the client as the server spelled them (the exchange adds chunked framing or
    Connection: close as the client needs)."""
    return _end_to_end(headers)


def value(headers: Headers, name: bytes) -> bytes | None:
    """The first value of a field; `name` lower-case."""
    for key, val in headers:
        if key.lower() == name:
            return val
    return None
