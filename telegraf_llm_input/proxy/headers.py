"""Which header fields cross the proxy (RFC 9110 §7.6.1): end-to-end ones pass unchanged, hop-by-hop ones stop.

Hop-by-hop: Connection and every field it names, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade.
Each side's framing is the proxy's (exchange.py: a chunked body is chunked again on the other side; a
Content-Length passes, the body being the same bytes). The only transfer coding that passes is one plain
`chunked` (`unsupported_coding`): any other (`gzip, chunked`) would reach the other side undeclared once the
field stops here. Transfer-Encoding with Content-Length llhttp refuses itself (RFC 9112 §6.3: never both). `Expect: 100-continue` is answered by the proxy itself,
so it stops too.
Host becomes the upstream's authority (as nginx's default): servers that check it (Ollama) see their own
name. Authorization and every other field pass untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

Headers = Sequence[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade"})
REQUEST_ONLY = frozenset({b"expect", b"host"})
_REQUEST_DROP = HOP_BY_HOP | REQUEST_ONLY
TE_CHUNKED = (b"Transfer-Encoding", b"chunked")


def _named_by(connection: Sequence[bytes]) -> set[bytes]:
    """The field names a message's Connection field values name."""
    return {token.strip().lower() for value in connection for token in value.split(b",") if token.strip()}


def _end_to_end(headers: Headers, drop: frozenset[bytes], connection: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    if connection:
        drop = drop | _named_by(connection)
    return [field for field in headers if field[0].lower() not in drop]


def codings(values: Sequence[bytes]) -> list[bytes]:
    """The transfer codings of a message's Transfer-Encoding field values, in the order applied, lower-case."""
    return [coding.strip().lower() for value in values for coding in value.split(b",")]


def unsupported_coding(values: Sequence[bytes]) -> str | None:
    """Why a message's framing cannot pass the proxy (a transfer coding other than one `chunked`), given its
    Transfer-Encoding field values; None if it can."""
    if not values or (len(values) == 1 and values[0].strip().lower() == b"chunked"):
        return None
    return (
        f"unsupported Transfer-Encoding {b', '.join(codings(values)).decode('ascii', 'replace')!r}: only chunked passes"
    )


def request_headers(
    headers: Headers, authority: bytes, chunked: bool, connection: Sequence[bytes]
) -> list[tuple[bytes, bytes]]:
    """The fields sent upstream, names spelled as the client did (`connection`: its Connection field values);
    a chunked request body stays chunked."""
    out = [(b"Host", authority), *_end_to_end(headers, _REQUEST_DROP, connection)]
    if chunked:
        out.append(TE_CHUNKED)
    return out


def response_headers(headers: Headers, connection: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """The fields sent back to the client as the server spelled them (`connection`: its Connection field
    values; the exchange adds chunked framing or Connection: close as the client needs)."""
    return _end_to_end(headers, HOP_BY_HOP, connection)


def value(headers: Headers, name: bytes) -> bytes | None:
    """The first value of a field; `name` lower-case."""
    for key, val in headers:
        if key.lower() == name:
            return val
    return None
