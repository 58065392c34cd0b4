"""The scrape client's answer reader, checked against h11 (the HTTP/1.1 reader httpx uses) on the same bytes.

Every framing a server may use (Content-Length, chunked with extensions and trailers, the connection's close,
1xx interim answers, 204/304), split into TCP reads at random places: the status, the headers, the body and
whether the connection can be used again must be what h11 says. Then what h11 also refuses, and the limits.
"""

import asyncio
import gzip
import socket
import threading

import h11
import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import HttpPool, get
from telegraf_llm_input.http11 import Broken, Rejected, TooBig, read_answer, request_bytes
from telegraf_llm_input.promtext import parse
from tests.support.procs import RealPrometheus, find_binary

BIG = 1 << 30


def feed(pieces: list[bytes], eof: bool) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=65536)
    for piece in pieces:
        reader.feed_data(piece)
    if eof:
        reader.feed_eof()
    return reader


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:]) if b > a]


def read(data: bytes, cuts: list[int] = (), eof: bool = True, limit: int = BIG):
    async def go():
        return await read_answer(feed(split(data, list(cuts)), eof), limit)

    return asyncio.run(go())


def h11_reads(data: bytes, eof: bool):
    """(status, headers joined as we join them, body, reusable) as h11 reads the answer to a GET."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/metrics", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    status, headers, body = None, {}, b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
            for name, value in event.headers:
                key = name.decode()
                headers[key] = f"{headers[key]}, {value.decode()}" if key in headers else value.decode()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        elif event is h11.NEED_DATA:
            raise AssertionError("h11 wants more data")
    # a body that ends with the connection leaves nothing to reuse, whatever the states say
    return status, headers, body, not eof and conn.our_state is h11.DONE and conn.their_state is h11.DONE


header_values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.;=/ ", min_size=0, max_size=12).map(str.strip)
extra_headers = st.lists(
    st.tuples(st.sampled_from(["X-A", "X-B", "Server", "Cache-Control", "Vary"]), header_values), max_size=4
)


@st.composite
def answers(draw):
    body = draw(st.binary(max_size=3000))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    status = draw(st.sampled_from([200, 200, 404, 500, 503, 204, 304]))
    version = "HTTP/1.0" if framing == "close" and draw(st.booleans()) else "HTTP/1.1"
    packed = draw(st.booleans()) and status not in (204, 304)
    if status in (204, 304):
        body, framing = b"", "length"
    wire_body = gzip.compress(body) if packed else body
    headers = [("Content-Type", "text/plain; version=0.0.4"), *draw(extra_headers)]
    if packed:
        headers.append(("Content-Encoding", "gzip"))
    if draw(st.booleans()):
        headers.append(("Connection", draw(st.sampled_from(["close", "keep-alive", "Keep-Alive, foo"]))))
    if framing == "length" and status not in (204, 304):
        headers.append(("Content-Length", str(len(wire_body))))
        payload = wire_body
    elif framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        sizes = draw(st.lists(st.integers(1, 700), max_size=8))
        payload, at = b"", 0
        for size in sizes:
            piece = wire_body[at : at + size]
            if not piece:
                break
            ext = draw(st.sampled_from(["", ";x=1", ";name", ';q="a b"']))
            payload += b"%x%s\r\n%s\r\n" % (len(piece), ext.encode(), piece)
            at += len(piece)
        if at < len(wire_body):
            payload += b"%x\r\n%s\r\n" % (len(wire_body) - at, wire_body[at:])
        trailers = draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"]))
        payload += b"0\r\n" + trailers + b"\r\n"
    else:
        payload = wire_body
    head = f"{version} {status} {draw(st.sampled_from(['OK', 'Not Found', '', 'Some Reason']))}\r\n"
    interim = "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" if draw(st.booleans()) else ""
    data = (interim + head + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode() + payload
    return data, framing == "close", body, packed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers(), st.lists(st.integers(0, 10_000), max_size=12))
def test_reads_every_framing_as_h11_does(answer, cuts):
    data, eof, body, packed = answer
    status, headers, wire_body, reusable = h11_reads(data, eof)
    got, keep = read(data, cuts, eof)
    assert got.status == status and got.headers == headers
    assert bytes(got.body) == body and (gzip.decompress(wire_body) if packed else wire_body) == body
    assert keep == reusable


def test_keep_alive_reads_the_next_answer_on_the_same_connection():
    one = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    two = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"

    async def go():
        reader = feed([one + two[:20], two[20:]], eof=False)
        first, keep1 = await read_answer(reader, BIG)
        second, keep2 = await read_answer(reader, BIG)
        return bytes(first.body), keep1, bytes(second.body), keep2

    assert asyncio.run(go()) == (b"abc", True, b"de", True)


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",  # conflicting lengths
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",  # bad chunk size
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",  # chunk longer than said
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # cut off
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",  # obs-fold
        b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n",  # space before the colon
        b"HTTP/2 200\r\n\r\n",
        b"<html>login</html>\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",  # bare LF
    ],
)
def test_refuses_what_h11_refuses_or_what_is_ambiguous(data):
    with pytest.raises(Broken):
        read(data)


def test_limits_status_rejection_and_request_bytes():
    with pytest.raises(TooBig) as err:
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 100, limit=99)
    assert err.value.declared == 100
    with pytest.raises(TooBig):  # no length given: stops at the limit while reading
        read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"a" * 100 + b"\r\n0\r\n\r\n", limit=99)
    with pytest.raises(TooBig):  # the limit is on the decoded body
        packed = gzip.compress(b"a" * 100_000)
        read(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(packed), packed),
            limit=1000,
        )

    async def rejected():
        reader = feed([b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nnope!"], eof=False)
        await read_answer(reader, BIG, reject=lambda status: status != 200)

    with pytest.raises(Rejected) as rej:
        asyncio.run(rejected())
    assert (rej.value.status, rej.value.reason) == (401, "Unauthorized")
    assert (
        request_bytes("/metrics", [("Host", "h:1"), ("X-A", "b")])
        == b"GET /metrics HTTP/1.1\r\nHost: h:1\r\nX-A: b\r\n\r\n"
    )
    for bad in ([("X-A", "b\r\nInjected: 1")], [("Bad Name", "1")]):
        with pytest.raises(ValueError):
            request_bytes("/metrics", bad)


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
    for answer in answers:
        assert answer.headers.get("content-encoding") == "gzip"  # decoded by us, from a real server
        page = parse(answer.text())
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
