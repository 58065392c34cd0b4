"""The scrape client (`http.get` over `http11.Client`) against real socket servers on 127.0.0.1.

Each server here writes raw bytes, so it can do what a well-behaved one would not: answer twice, time a kept
connection out with a 408, reset it, frame a body wrongly. Requests are read with h11 (server side).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import h11
import httpx
import pytest

from telegraf_llm_input import h11io
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError, HttpPool, get
from telegraf_llm_input.promtext import parse
from tests.support.procs import RealPrometheus, find_binary

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def next_path(reader: asyncio.StreamReader) -> str | None:
    """The path of the client's next request (h11 reads it), None when the client closed."""
    conn = h11.Connection(h11.SERVER)
    event = await h11io.receive(conn, reader)
    return event.target.decode() if isinstance(event, h11.Request) else None


def answer(body: bytes, *head: str, status: str = "200 OK") -> bytes:
    lines = "".join(f"{h}\r\n" for h in head) if head else f"Content-Length: {len(body)}\r\n"
    return f"HTTP/1.1 {status}\r\n{lines}\r\n".encode() + body


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, list[asyncio.StreamWriter]]]:
    """A server on a free port running `handler(reader, writer, n)` for its n-th connection: (url, connections)."""
    connections: list[asyncio.StreamWriter] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        try:
            await handler(reader, writer, len(connections))
        except (ConnectionError, h11.ProtocolError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}", connections
    finally:
        srv.close()
        for writer in connections:  # a handler still waiting for the client sees the end and returns
            writer.close()
        await asyncio.sleep(0.01)


async def by_path(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int = 0) -> None:
    """Answer each request with its own path, keep-alive, until the client closes."""
    while (path := await next_path(reader)) is not None:
        writer.write(answer(path.encode()))
        await writer.drain()


def configured(url: str, target: dict) -> TargetConfig:
    """A target; its headers set after the config's checks, which refuse a header h11 would (the client's own
    refusal is what is tested)."""
    config = TargetConfig(url=url, **{k: v for k, v in target.items() if k != "headers"})  # type: ignore[arg-type]
    config.headers = target.get("headers", {})
    return config


def run(handler: Handler, paths: list[str], pause: float = 0.0, **target: object) -> tuple[list[object], int]:
    """GET `paths` in turn through one pool (`pause` seconds apart): (bodies or FetchErrors, connections made)."""

    async def go() -> tuple[list[object], int]:
        async with server(handler) as (url, connections):
            pool = HttpPool()
            got: list[object] = []
            try:
                for path in paths:
                    try:
                        got.append(bytes((await get(pool, configured(url, target), path)).body))
                    except FetchError as exc:
                        got.append(exc)
                    await asyncio.sleep(pause)
            finally:
                await pool.close()
            return got, len(connections)

    return asyncio.run(go())


# -- issue 23 item 1: an answer nobody asked for never answers the next request


@pytest.mark.parametrize("when", ["with the answer", "while idle"])
def test_an_unasked_for_answer_does_not_put_answers_out_of_step(when):
    async def handler(reader, writer, n):
        extra = answer(b"unasked")
        path = await next_path(reader)
        if n == 1 and when == "with the answer":
            writer.write(answer(path.encode()) + extra)
        else:
            writer.write(answer(path.encode()))
            if n == 1:
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(extra)
        await writer.drain()
        await by_path(reader, writer)

    got, connections = run(handler, ["/health", "/version", "/metrics", "/health"], pause=0.2, retries=0)
    assert got == [b"/health", b"/version", b"/metrics", b"/health"]
    assert connections == 2  # the spoilt connection was dropped, the new one kept


# -- issue 23 item 2: a 408 or a reset on a reused connection is a stale connection


def test_a_408_sent_before_closing_an_idle_connection_is_not_the_next_answer():
    async def handler(reader, writer, n):
        writer.write(answer((await next_path(reader)).encode()))
        await writer.drain()
        if n == 1:
            await asyncio.sleep(0.05)  # the server's idle timeout (RFC 9110 15.5.9)
            writer.write(answer(b"", "Connection: close", "Content-Length: 0", status="408 Request Timeout"))
            await writer.drain()
            return
        await by_path(reader, writer)

    got, connections = run(handler, ["/a", "/b", "/c"], pause=0.2, retries=0)
    assert got == [b"/a", b"/b", b"/c"] and connections == 2


@pytest.mark.parametrize("how", ["408", "reset", "close"])
def test_a_reused_connection_timed_out_as_the_request_crossed_is_retried_once_on_a_new_one(how):
    """The server gives up on the kept connection just as our next request arrives: it answers that request
    with 408, resets or closes; the GET goes again on a new connection (with `retries: 0`)."""

    async def handler(reader, writer, n):
        writer.write(answer((await next_path(reader)).encode()))
        await writer.drain()
        if n == 1:
            await next_path(reader)
            if how == "408":
                writer.write(answer(b"", "Connection: close", "Content-Length: 0", status="408 Request Timeout"))
            elif how == "reset":
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        await by_path(reader, writer)

    got, connections = run(handler, ["/a", "/b", "/c"], retries=0)
    assert got == [b"/a", b"/b", b"/c"] and connections == 2


def test_a_408_on_a_new_connection_is_an_answer():
    async def handler(reader, writer, n):
        await next_path(reader)
        writer.write(answer(b"slow\n", status="408 Request Timeout"))
        await writer.drain()

    [err], connections = run(handler, ["/a"], retries=0)
    assert isinstance(err, FetchError) and (err.kind, err.status) == ("http_status", 408) and connections == 1


# -- issue 23 item 3: malformed framings each end in one clear line


def serve_once(data: bytes) -> Handler:
    """Answer one request with `data`, then wait until the client gives up (a body cut off: the server closes)."""

    async def handler(reader, writer, n):
        await next_path(reader)
        writer.write(data)
        await writer.drain()
        if b"cut off" not in data:
            await reader.read()

    return handler


PAGE = b"# TYPE up gauge\nup 1\n" * 50
CUT = gzip.compress(PAGE)[:-20]


@pytest.mark.parametrize(
    "data, kind, words",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nab", "error", "Content-Length"),  # latin-1: isdigit()
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\nab", "error", "Content-Length"),  # UTF-8
        (
            answer(b"2\r\nab\r\n0\r\n\r\n", "Transfer-Encoding: gzip, chunked"),
            "error",
            "Transfer-Encoding",
        ),
        (answer(CUT, "Content-Encoding: gzip", f"Content-Length: {len(CUT)}"), "error", "gzip body cut off"),
        (
            answer(b"%x\r\n%s\r\n0\r\n\r\n" % (len(CUT), CUT), "Content-Encoding: gzip", "Transfer-Encoding: chunked"),
            "error",
            "gzip body cut off",
        ),
        (answer(b"ffffffffffffffff\r\nabc", "Transfer-Encoding: chunked"), "too_big", "max_body_bytes (1048576)"),
        (answer(b"", "Content-Length: 18446744073709551615"), "too_big", "18446744073709551615 bytes"),
        (answer(b"abc", "Content-Length: 3", "Content-Length: 4"), "error", "Content-Length"),
        (answer(b"zz\r\nab\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), "error", "chunk"),
        (b"HTTP/2 200\r\n\r\n", "error", "connection broken"),
        (b"<html>login</html>\r\n\r\n", "error", "connection broken"),
        (answer(b"cut off", "Content-Length: 10"), "error", "connection broken"),
    ],
    ids=[
        "content-length-superscript-2-latin-1",
        "content-length-superscript-2-utf-8",
        "transfer-encoding-gzip-chunked",
        "truncated-gzip-content-length",
        "truncated-gzip-chunked",
        "chunk-size-2^64-1",
        "content-length-2^64-1",
        "conflicting-lengths",
        "bad-chunk-size",
        "http2",
        "not-http",
        "cut-off",
    ],
)
def test_a_malformed_framing_is_one_clear_line_never_a_hang(data, kind, words):
    [err], _ = run(serve_once(data), ["/m"], retries=0, timeout=10, max_body_bytes=1 << 20)
    assert isinstance(err, FetchError), err
    assert (err.kind, "\n" in str(err)) == (kind, False), str(err)
    assert words in str(err) and str(err).startswith("GET http://127.0.0.1:")


# -- what must keep working: every framing a server may use, split into TCP writes at any place


GZ, DEFLATE, RAW_DEFLATE = gzip.compress(PAGE), zlib.compress(PAGE), zlib.compress(PAGE)[2:-4]
CHUNKED = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in (PAGE[:100], PAGE[100:])) + b"0\r\nX-T: 1\r\n\r\n"


@pytest.mark.parametrize(
    "data, body, kept",
    [
        (answer(PAGE), PAGE, True),
        (answer(CHUNKED, "Transfer-Encoding: chunked"), PAGE, True),
        (answer(GZ, "Content-Encoding: gzip", f"Content-Length: {len(GZ)}"), PAGE, True),
        (answer(DEFLATE, "Content-Encoding: deflate", f"Content-Length: {len(DEFLATE)}"), PAGE, True),
        (answer(RAW_DEFLATE, "Content-Encoding: deflate", f"Content-Length: {len(RAW_DEFLATE)}"), PAGE, True),
        (answer(PAGE, "Connection: close"), PAGE, False),
        (b"HTTP/1.0 200 OK\r\n\r\n" + PAGE, PAGE, False),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + answer(PAGE), PAGE, True),
        (answer(b"", "Content-Length: 0", status="204 No Content"), b"", True),
    ],
    ids=["length", "chunked", "gzip", "deflate", "raw-deflate", "close", "http1.0", "103", "204"],
)
@pytest.mark.parametrize("pieces", [1, 7])
def test_every_framing_in_any_pieces_and_whether_the_connection_is_kept(data, body, kept, pieces):
    async def handler(reader, writer, n):
        while await next_path(reader) is not None:
            step = -(-len(data) // pieces)
            for at in range(0, len(data), step):
                writer.write(data[at : at + step])
                await writer.drain()
                await asyncio.sleep(0.001)
            if b"close" in data or b"HTTP/1.0" in data:
                return

    got, connections = run(handler, ["/m", "/m"], retries=0)
    assert got == [body, body] and connections == (1 if kept else 2)


def test_limits_on_the_wire_and_after_decoding_and_a_header_that_would_split_the_request():
    bomb = gzip.compress(b"a" * 2_000_000)
    cases = {
        "/length": answer(b"a" * 2000),
        "/chunked": answer(b"7d0\r\n" + b"a" * 2000 + b"\r\n0\r\n\r\n", "Transfer-Encoding: chunked"),
        "/bomb": answer(bomb, "Content-Encoding: gzip", f"Content-Length: {len(bomb)}"),
    }

    async def handler(reader, writer, n):
        while (path := await next_path(reader)) is not None:
            writer.write(cases[path])
            await writer.drain()

    got, _ = run(handler, list(cases), retries=0, max_body_bytes=1000)
    assert [(e.kind, "over max_body_bytes (1000)" in str(e)) for e in got] == [("too_big", True)] * 3
    assert "body of 2000 bytes" in str(got[0])
    [err], connections = run(by_path, ["/m"], retries=0, headers={"X-Key": "s3cr3t\r\nX-Injected: 1"})
    assert err.kind == "error" and "s3cr3t" not in str(err) and "X-Key" in str(err) and connections == 0


@pytest.mark.realserver
def test_a_real_go_server_gzip_and_keep_alive(tmp_path):
    """Prometheus' own /metrics (Go net/http + promhttp, gzip when asked) read through `http.get`, several times on
    one kept connection: a whole page every time, the same one httpx reads."""
    prometheus = find_binary("prometheus")
    if not prometheus:
        pytest.skip("prometheus not installed: apt-get install prometheus (scripts/test.sh does)")
    prom = RealPrometheus(prometheus, tmp_path, "global: {scrape_interval: 1h}\nscrape_configs: []\n")
    try:
        prom.wait_ready()
        target = TargetConfig(url=prom.url)

        async def scrapes():
            pool = HttpPool()
            try:
                return [await get(pool, target, "/metrics") for _ in range(3)]
            finally:
                await pool.close()

        answers = asyncio.run(scrapes())
        theirs = httpx.get(f"{prom.url}/metrics", timeout=10).text
    finally:
        prom.stop()
    accepted = [
        sum(s.value for s in parse(a.text()).samples if s.name == "net_conntrack_listener_conn_accepted_total")
        for a in answers
    ]
    assert accepted[0] == accepted[1] == accepted[2] > 0  # the server took no new connection: one, kept
    for response in answers:
        assert response.headers.get("content-encoding") == "gzip"  # decoded by us, from a real server
        page = parse(response.text())
        assert page.errors == 0
        assert {s.name for s in page.samples} >= {"go_goroutines", "prometheus_build_info"}
    ours_names = {s.name for s in parse(answers[-1].text()).samples}
    assert ours_names == {s.name for s in parse(theirs).samples}


def test_a_connection_the_server_dropped_while_idle_is_replaced():
    """A server that closes each connection after answering (without saying so): the next GET still gets its
    answer, on a new connection, as the server's count of connections shows."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    seen = {"connections": 0}

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                seen["connections"] += 1
                conn.recv(65536)
                body = b"n %d\n" % seen["connections"]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    threading.Thread(target=serve, daemon=True).start()
    target = TargetConfig(url=f"http://127.0.0.1:{listener.getsockname()[1]}", retries=0)

    async def two():
        pool = HttpPool()
        try:
            first = await get(pool, target, "/m")
            await asyncio.sleep(0)  # the close may or may not have been seen yet: both must work
            return first, await get(pool, target, "/m")
        finally:
            await pool.close()

    first, second = asyncio.run(two())
    listener.close()
    assert (bytes(first.body), bytes(second.body)) == (b"n 1\n", b"n 2\n")
