"""Framing the proxy cannot pass on (RFC 9112 §6): a transfer coding other than one plain `chunked`, or
Transfer-Encoding with Content-Length. Raw sockets on loopback through the real proxy: each such message gets a
short error and its connection closed; nothing undeclared reaches the other side, nobody hangs, and the next
client is served as before."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from tests.fakes.upstream import RawUpstream, Upstream
from tests.support.proxy import ThreadProxy, read_to_close


def _exchange(port: int, request: bytes) -> bytes:
    """Everything the proxy answers to `request` until it closes the connection (a hang fails the test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return read_to_close(sock)


CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"


def _post(te: bytes, body: bytes = CHUNKED_HELLO) -> bytes:
    return b"POST /sink HTTP/1.1\r\nHost: x\r\n" + te + b"\r\n" + body


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (b"Transfer-Encoding: gzip, chunked\r\n", 501),  # chunked last, gzip not understood (§6.1)
        (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 501),  # the same in two fields
        (b"Transfer-Encoding: x-unknown, chunked\r\n", 501),
        (b"Transfer-Encoding: chunked, chunked\r\n", 400),  # chunked twice (§7)
        (b"Transfer-Encoding: chunked, gzip\r\n", 400),  # chunked not last: no length (§6.3)
        (b"Transfer-Encoding: gzip\r\n", 400),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),  # both: smuggling (§6.3)
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
    ],
)
def test_a_request_with_a_coding_other_than_chunked_is_refused_and_never_forwarded(fields, status):
    with Upstream() as up, ThreadProxy(up.url) as proxy:
        answer = _exchange(proxy.port, _post(fields))
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 %d " % status), answer
        assert b"connection: close" in head.lower()
        assert b'"error"' in body and len(body) < 200
        assert up.requests == []
        # the next client is served as before
        assert httpx.post(proxy.url + "/sink", content=b"abc", timeout=10).json()["bytes"] == 3


def test_an_http_1_0_request_with_transfer_encoding_is_refused():
    """RFC 9112 §6.1: its framing is faulty (HTTP/1.0 has no chunked), Content-Length or not."""
    with Upstream() as up, ThreadProxy(up.url) as proxy:
        request = b"POST /sink HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO
        assert _exchange(proxy.port, request).startswith(b"HTTP/1.1 400 ")
        assert up.requests == []


def test_a_plain_chunked_request_in_any_case_still_passes():
    with Upstream() as up, ThreadProxy(up.url) as proxy:
        answer = _exchange(proxy.port, _post(b"Transfer-Encoding: Chunked\r\nConnection: close\r\n"))
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"bytes": 5' in answer
        ((_, _, headers),) = up.requests
        assert [v for k, v in headers if k == b"transfer-encoding"] == [b"chunked"]
        assert all(k != b"content-length" for k, _ in headers)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + CHUNKED_HELLO,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nhello",  # close-delimited, still coded
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: x-unknown\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n" + CHUNKED_HELLO,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + CHUNKED_HELLO,
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO,  # HTTP/1.0 has no chunked (§6.1)
    ],
)
def test_an_answer_with_a_coding_other_than_chunked_gets_a_502(answer):
    with RawUpstream(answer) as up, ThreadProxy(up.url) as proxy:
        chat = b'{"model": "m", "messages": []}'
        got = _exchange(
            proxy.port, b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(chat), chat)
        )
        head, body = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 502 "), got
        assert b"connection: close" in head.lower()
        assert httpx.Response(502, content=body).json()["error"]["type"] == "upstream_bad_response"
        assert b"hello" not in body and len(body) < 300
        (record,) = proxy.records(1)
        assert (record.outcome, record.model) == ("upstream_bad_response", "m")


def test_a_plain_chunked_answer_still_passes():
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n" + CHUNKED_HELLO
    with RawUpstream(answer) as up, ThreadProxy(up.url) as proxy:
        r = httpx.get(proxy.url + "/api/tags", timeout=10)
        assert (r.status_code, r.content) == (200, b"hello")


@pytest.mark.parametrize(
    "fields", [b"Transfer-Encoding: gzip, chunked\r\n", b"Content-Length: 1\r\nContent-Length: 2\r\n"]
)
def test_a_refused_request_whose_body_is_still_coming_gets_its_answer_not_a_reset(fields):
    """curl uploading a big body reads the answer while it sends: closing at once would reset the connection
    with the body still arriving, and the error answer would be lost with it."""
    piece = b"10000\r\n" + b"a" * 65536 + b"\r\n"
    with Upstream() as up, ThreadProxy(up.url) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sent: list[int] = []

            def upload() -> None:
                sock.sendall(b"POST /sink HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
                for _ in range(64):  # 4 MiB, more than the socket buffers hold
                    sock.sendall(piece)
                    sent.append(len(piece))

            thread = threading.Thread(target=upload)
            thread.start()
            answer = read_to_close(sock)
            thread.join(30)
        assert answer.startswith((b"HTTP/1.1 501 ", b"HTTP/1.1 400 ")), answer
        assert sum(sent) == 64 * len(piece)  # the rest was read and dropped, never answered with a reset
        assert up.requests == []


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000,  # one field that never ends, the connection kept open
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Part-%d: %s\r\n" % (i, b"a" * 1000) for i in range(80)) + b"\r\n",
    ],
)
def test_an_answer_head_over_64_kib_gets_a_502_at_once(answer):
    """A lying upstream cannot grow the proxy's memory with a head, nor hold the client until the timeout."""
    with RawUpstream(answer, keep=True) as up, ThreadProxy(up.url) as proxy:
        got = _exchange(proxy.port, b"GET /api/tags HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 502 "), got[:200]
        error = httpx.Response(502, content=body).json()["error"]
        assert error["type"] == "upstream_bad_response" and "over 65536 bytes" in error["message"]
        assert httpx.get(proxy.url + "/proxy/metrics", timeout=10).status_code == 200  # the proxy serves on
