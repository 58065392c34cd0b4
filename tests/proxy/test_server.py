"""The proxy passes everything through and survives every upstream or client fault without losing anyone else's
request: real sockets, the real proxy (in a thread, or as the command), upstreams that misbehave on purpose."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import subprocess
import threading
import time

import httpx
import psutil
import pytest

from telegraf_llm_input.proxy.courtesy import Courtesy
from telegraf_llm_input.proxy.downstream import ClientConn
from tests.fakes.streaming import Script, StreamingServer
from tests.fakes.upstream import RawUpstream, Upstream
from tests.support.procs import free_port
from tests.support.proxy import ProcessProxy, ThreadProxy, read_to_close

MB = 1024 * 1024
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def settled(proxy: ThreadProxy) -> bool:
    """Every exchange counted itself out (the proxy yields its core only for one alone: a leak would stop that)."""
    deadline = time.monotonic() + 5
    while proxy.call(lambda: proxy.proxy.courtesy.exchanges) != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    return proxy.call(lambda: proxy.proxy.courtesy.exchanges) == 0


def test_every_answer_passes_byte_for_byte_with_its_end_to_end_headers():
    with StreamingServer(Script(ttft_s=0.0, interval_s=0.001)) as fake, ThreadProxy(fake.url) as proxy:
        auth = {"Authorization": "Bearer s3cret"}
        cases = [
            ("POST", "/v1/chat/completions", CHAT),
            ("POST", "/v1/chat/completions", {**CHAT, "stream": False}),
            ("POST", "/v1/completions", {"model": "fake-model", "prompt": "hi", "stream": True}),
            ("POST", "/api/chat", {**CHAT, "stream": True}),
            ("POST", "/api/generate", {"model": "fake-model", "prompt": "hi"}),
            ("GET", "/v1/models", None),
            ("GET", "/api/tags", None),
            ("GET", "/nowhere", None),
        ]
        with httpx.Client(timeout=10) as client:
            for method, path, body in cases:
                direct = client.request(method, fake.url + path, json=body, headers=auth)
                proxied = client.request(method, proxy.url + path, json=body, headers=auth)
                assert (proxied.status_code, proxied.content) == (direct.status_code, direct.content), path
                assert proxied.headers["content-type"] == direct.headers["content-type"]
            client.post(
                proxy.url + "/v1/chat/completions",
                json=CHAT,
                headers={**auth, "Connection": "keep-alive, X-Hop", "X-Hop": "1", "X-End": "2", "TE": "trailers"},
            )
        seen = {k.lower(): v for k, v in fake.requests[-1].headers.items()}
        assert seen["authorization"] == "Bearer s3cret"  # untouched
        assert seen["x-end"] == "2" and "x-hop" not in seen and "te" not in seen  # hop-by-hop stopped
        assert seen["host"] == f"127.0.0.1:{fake.port}"


def test_upstream_refusing_gets_a_502_with_a_short_json_error_at_once(caplog):
    caplog.set_level(logging.DEBUG, logger="telegraf_llm_input")
    with ThreadProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        for _ in range(3):
            httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=10)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "refused the connection" in warnings[0]  # once, not per request
        r = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=10)
        assert r.status_code == 502
        assert r.json()["error"]["type"] == "upstream_refused"
        assert len(r.content) < 200
        (record,) = proxy.records(1)
        assert (record.outcome, record.model, record.api) == ("upstream_refused", "fake-model", "openai_chat")
        assert 'outcome="upstream_refused",code="502"} 4' in proxy.page()
        assert settled(proxy)


def test_an_upstream_that_hangs_gets_a_504_and_blocks_nobody_else():
    with Upstream() as up, ThreadProxy(up.url, timeout_s=1.0) as proxy:
        hung: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: hung.append(httpx.post(proxy.url + "/hang", json={}, timeout=30)))
        thread.start()
        while not any(path == "/hang" for _, path, _ in up.requests):
            time.sleep(0.01)
        other = httpx.post(proxy.url + "/sink", content=b"abc", timeout=10)  # while the other one hangs
        assert other.json() == {"bytes": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
        assert not hung  # still waiting
        thread.join(30)
        assert hung[0].status_code == 504 and hung[0].json()["error"]["type"] == "upstream_timeout"
        assert settled(proxy)


def test_an_upstream_closing_mid_stream_cuts_that_client_only():
    with StreamingServer(Script(ttft_s=0.0, interval_s=0.01, cut_after=3)) as fake, ThreadProxy(fake.url) as proxy:
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("POST", proxy.url + "/v1/chat/completions", json=CHAT, timeout=10) as r,
        ):
            r.read()  # the client sees a broken answer, never a complete-looking one
        (cut,) = proxy.records(1)
        assert cut.outcome == "upstream_closed" and cut.counted == "chunks" and cut.output_tokens == 3
        fake.update(cut_after=None)
        whole = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=10)
        assert whole.status_code == 200 and whole.text.rstrip().endswith("data: [DONE]")
        assert 'outcome="upstream_closed"' in proxy.page()
        assert settled(proxy)


def test_a_client_that_leaves_mid_stream_cancels_the_upstream_request():
    with Upstream() as up, ThreadProxy(up.url) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        body = json.dumps({"model": "m", "prompt": "p"}).encode()
        sock.sendall(
            b"POST /api/generate?chunks=100&every=0.5 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        got = b""
        while b'" 0"' not in got:  # the first token arrived
            got += sock.recv(4096)
        sock.close()
        left = time.monotonic()
        while up.closed_at is None:
            time.sleep(0.005)
        print(f"upstream saw the cancel {1000 * (up.closed_at - left):.1f} ms after the client left")
        assert up.slow_sent < 100  # it stopped generating: the rest was never sent
        (record,) = proxy.records(1)
        assert (record.outcome, record.api, record.model) == ("cancelled", "ollama_generate", "m")
        assert record.ttft_s is not None  # the first token was seen before the client left
        # the proxy serves the next client as before
        assert httpx.post(proxy.url + "/sink", content=b"x", timeout=10).json()["bytes"] == 1
        assert 'outcome="cancelled"' in proxy.page()
        assert settled(proxy)


def test_expect_100_continue_is_answered_by_the_proxy():
    with Upstream() as up, ThreadProxy(up.url) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"hello")
        answer = b""
        while not answer.endswith(b"}"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"bytes": 5' in answer
        assert all(name != b"expect" for _, _, headers in up.requests for name, _ in headers)


def test_a_token_is_timed_by_its_own_read_though_measured_after_the_next():
    """The proxy measures a read once the next one has passed (or the answer ended), so the client woken by a
    token never waits for it: the first token's TTFT is still its own read's, not the next token's 0.5 s later."""
    script = Script(ttft_s=0.05, interval_s=0.5, answer=(" a", " b"), role_chunk=False)
    with StreamingServer(script) as fake, ThreadProxy(fake.url) as proxy:
        t0 = time.monotonic()
        firsts = []
        with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=CHAT, timeout=10) as r:
            for line in r.iter_lines():
                if '"content"' in line and not firsts:
                    firsts.append(time.monotonic() - t0)
        (record,) = proxy.records(1)
    assert record.outcome == "ok" and record.chunks == 2
    # within the client's own span (stamped at the second token's read it would be past the client's first read)
    assert 0.05 <= record.ttft_s <= firsts[0]
    assert record.e2e_s >= 0.55  # the second token is not sent before 0.55 s


def test_the_core_is_yielded_after_the_request_and_a_first_token_never_after_a_head_alone():
    """courtesy.py: after a write the woken reader runs first, the proxy's measuring after; a head alone (a server
    that answers at once and then computes, as vLLM's does) carries no token, so its reader is not hurried."""
    with Upstream() as up, ThreadProxy(up.url) as proxy:
        yields: list[float] = []
        proxy.call(lambda: setattr(proxy.proxy, "courtesy", Courtesy(lambda: yields.append(time.monotonic()))))
        r = httpx.post(proxy.url + "/api/generate?chunks=2&every=0.3&first=0.3", json={"model": "m"}, timeout=10)
        assert r.status_code == 200 and r.text.count("\n") == 3
        token = up.first_line_at  # the head went 0.3 s before it, alone
        assert token is not None
        assert len([t for t in yields if t < token]) == 1, (token, yields)  # the request's, not the head's
        assert any(t > token for t in yields), (token, yields)  # the first token's
        assert settled(proxy)


def test_keep_alive_on_both_sides():
    with Upstream() as up, ThreadProxy(up.url) as proxy, httpx.Client(timeout=10) as client:
        for i in range(5):
            assert client.post(proxy.url + "/sink", content=b"x" * i).json()["bytes"] == i
        assert up.connections == 1


def test_a_bad_request_gets_a_400_the_connection_closed_and_the_upstream_never_sees_it():
    with Upstream() as up, ThreadProxy(up.url) as proxy:
        for bad in (
            b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"GET /sink HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
            b"NOT-HTTP\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
                sock.sendall(bad)
                answer = read_to_close(sock)  # closed after the answer: nothing of the rest is read as a request
            assert answer.startswith(b"HTTP/1.1 400 ") and b"connection: close" in answer.lower(), answer
        assert up.requests == []
        assert httpx.post(proxy.url + "/sink", content=b"abc", timeout=10).json()["bytes"] == 3


def _good_or_bad(request: bytes) -> bytes:
    if request.startswith(b"GET /bad "):
        return b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nno"  # llhttp: invalid status code
    return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_an_upstream_answering_a_malformed_head_gets_a_502_and_the_proxy_serves_the_others():
    with RawUpstream(_good_or_bad, keep=True) as up, ThreadProxy(up.url) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive: the proxy closes it
            head, body = read_to_close(sock).split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 502 ") and b"connection: close" in head.lower()
        error = json.loads(body)["error"]
        assert error["type"] == "upstream_bad_response" and "Invalid status code" in error["message"]
        with httpx.Client(timeout=10) as client:
            assert [client.get(proxy.url + "/good").content for _ in range(2)] == [b"ok", b"ok"]
        assert up.connections == 2  # the bad answer's connection was dropped, the good one kept


def test_an_upstream_sending_more_than_its_content_length_the_answer_passes_and_its_connection_goes():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + b"EXTRA bytes\r\n"
    with RawUpstream(answer, keep=True) as up, ThreadProxy(up.url) as proxy, httpx.Client(timeout=10) as client:
        for _ in range(2):
            r = client.get(proxy.url + "/api/tags")
            assert (r.status_code, r.content) == (200, b"hello")  # the extra bytes never reach the client
        assert up.connections == 2  # a connection that sent more than it said is never reused


def test_curl_posting_a_large_body_gets_its_100_continue_at_once(tmp_path):
    """curl sends `Expect: 100-continue` for bodies over 1 MiB and waits (1 s by default, 30 here) for it."""
    body = tmp_path / "body.bin"
    body.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    with Upstream() as up, ThreadProxy(up.url) as proxy:
        for path, status in (("/sink", 200), ("/proxy/metrics", 405)):
            curl = subprocess.run(
                ["curl", "-sv", "--expect100-timeout", "30", "--data-binary", f"@{body}", proxy.url + path],
                capture_output=True,
                timeout=120,
            )
            log = curl.stderr.decode()
            assert "> Expect: 100-continue" in log and "< HTTP/1.1 100 Continue" in log, log
            assert "Done waiting for 100-continue" not in log  # curl sent its body on the proxy's word
            assert f"< HTTP/1.1 {status} " in log
            if status == 200:
                assert json.loads(curl.stdout)["bytes"] == 2 * MB


def test_an_http_1_0_client_expecting_100_continue_gets_none():
    """RFC 9110 §10.1.1: an HTTP/1.0 request's expectation is ignored (a 100 would read as the answer)."""
    with Upstream() as up, ThreadProxy(up.url) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(b"POST /sink HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
            answer = read_to_close(sock)
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"bytes": 5' in answer, answer


def _peak_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        out.append(proc.memory_info().rss)
        time.sleep(0.02)


def test_a_100_mb_request_body_streams_through_in_bounded_memory(tmp_path):
    with Upstream() as up:
        proxy = ProcessProxy(up.url, tmp_path).start()
        try:
            assert proxy.process is not None
            idle = psutil.Process(proxy.process.pid).memory_info().rss
            stop, samples = threading.Event(), []
            watcher = threading.Thread(target=_peak_rss, args=(proxy.process.pid, stop, samples))
            watcher.start()
            piece = bytes(range(256)) * 4096  # 1 MiB
            digest = hashlib.sha256()
            for _ in range(100):
                digest.update(piece)
            r = httpx.post(
                proxy.url + "/sink",
                content=(piece for _ in range(100)),
                headers={"Content-Length": str(100 * MB)},
                timeout=120,
            )
            stop.set()
            watcher.join()
            assert r.json() == {"bytes": 100 * MB, "sha256": digest.hexdigest()}
            print(f"proxy RSS idle {idle / MB:.1f} MiB, peak {max(samples) / MB:.1f} MiB")
            assert max(samples) - idle < 40 * MB  # never the body: a few buffers
        finally:
            proxy.stop()


def test_a_slow_client_holds_the_upstream_back_and_the_proxy_memory_stays_bounded(tmp_path):
    total = 256 * MB
    with Upstream() as up:
        proxy = ProcessProxy(up.url, tmp_path).start()
        try:
            assert proxy.process is not None
            idle = psutil.Process(proxy.process.pid).memory_info().rss
            with httpx.stream("GET", f"{proxy.url}/source?bytes={total}", timeout=60) as r:
                stream = r.iter_raw(MB)
                read = len(next(stream))
                time.sleep(1.0)  # the client stops reading; the upstream must stop with it
                paused_at, held = read, up.sent
                rss = psutil.Process(proxy.process.pid).memory_info().rss
                for chunk in stream:
                    read += len(chunk)
            print(f"client paused after {paused_at / MB:.0f} MiB read; upstream had sent {held / MB:.1f} MiB")
            assert read == total
            assert held < 64 * MB  # socket buffers, not the answer
            assert rss - idle < 40 * MB
        finally:
            proxy.stop()


def test_an_answer_that_stops_midway_is_cut_after_the_timeout():
    with Upstream() as up, ThreadProxy(up.url, timeout_s=0.5) as proxy:
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("POST", proxy.url + "/api/generate?chunks=3&every=30", json={"model": "m"}, timeout=30) as r,
        ):
            r.read()
        (record,) = proxy.records(1)
        assert (record.outcome, record.output_tokens, record.counted) == ("upstream_timeout", 1, "chunks")
        assert up.closed_at is not None or up.slow_sent == 1  # the upstream's connection was dropped


def _answers(sock: socket.socket, count: int) -> list[bytes]:
    """`count` whole JSON answers (Content-Length bodies) read from a socket."""
    got, answers = b"", []
    while len(answers) < count:
        data = sock.recv(65536)
        assert data, f"closed after {len(answers)} answers"
        got += data
        while b"\r\n\r\n" in got:
            head, rest = got.split(b"\r\n\r\n", 1)
            length = int(
                next(
                    v for k, v in (f.split(b": ", 1) for f in head.split(b"\r\n")[1:]) if k.lower() == b"content-length"
                )
            )
            if len(rest) < length:
                break
            answers.append(head.split(b"\r\n", 1)[0] + b" " + rest[:length])
            got = rest[length:]
    return answers


def test_pipelined_requests_are_answered_in_order_on_one_upstream_connection():
    with Upstream() as up, ThreadProxy(up.url) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        one = b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
        two = b"POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ncde\r\n0\r\n\r\n"
        sock.sendall(one + two)  # both in one write: the second waits for the first's answer
        first, second = _answers(sock, 2)
        assert first.startswith(b"HTTP/1.1 200 ") and b'"bytes": 2' in first
        assert second.startswith(b"HTTP/1.1 200 ") and b'"bytes": 3' in second
        assert up.connections == 1


def test_a_request_head_over_64_kib_gets_a_431_and_the_upstream_never_sees_it():
    with Upstream() as up, ThreadProxy(up.url) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"GET /source?bytes=1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 431 ")
        assert up.requests == []


def test_a_request_head_under_64_kib_arriving_in_pieces_passes():
    """A 40 KiB head (a long cookie) that arrives over several reads is 40 KiB, not its reads plus its fields."""
    head = b"GET /source?bytes=1 HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Part-%d: %s\r\n" % (i, b"a" * 1000) for i in range(40)
    )
    with Upstream() as up, ThreadProxy(up.url) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        for start in range(0, len(head), 4096):
            sock.sendall(head[start : start + 4096])
            time.sleep(0.005)  # each piece its own read
        sock.sendall(b"\r\n")
        assert _answers(sock, 1)[0].startswith(b"HTTP/1.1 200 ")
        assert len(up.requests) == 1


def test_an_http_1_0_client_gets_a_chunked_answer_as_a_body_ended_by_the_close():
    with Upstream() as up, ThreadProxy(up.url) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"POST /api/generate?chunks=2&every=0.01 HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
        got = b""
        while data := sock.recv(65536):
            got += data
        head, body = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 ") and b"transfer-encoding" not in head.lower()
        lines = [json.loads(line) for line in body.splitlines()]  # the NDJSON lines whole: no chunk framing in them
        assert [line["response"] for line in lines[:2]] == [" 0", " 1"]


def test_an_answer_ends_once_what_came_before_its_last_read_is_measured(monkeypatch):
    """A client that sends its next request as soon as an answer ends finds the proxy done with that answer's
    tokens: the first token is measured before the answer's end goes on (its own read still measured after its
    write, stamped with its own time)."""
    with Upstream() as up, ThreadProxy(up.url) as proxy:
        at_end: list[float] = []
        write = ClientConn.write

        def watched(conn: ClientConn, data: bytes) -> None:
            if data.endswith(b"0\r\n\r\n"):  # the answer's last chunk
                at_end.append(proxy.meters.ttft.count(("m", "ollama_generate")))
            write(conn, data)

        monkeypatch.setattr(ClientConn, "write", watched)
        r = httpx.post(proxy.url + "/api/generate?chunks=1&every=0.1", json={"model": "m"}, timeout=10)
        assert r.status_code == 200 and r.text.count("\n") == 2
        assert at_end == [1]
        (record,) = proxy.records(1)
        # the token's own read's time, not the end's (which came 0.1 s after it)
        assert record.ttft_s is not None and record.e2e_s is not None and record.ttft_s < record.e2e_s - 0.05
