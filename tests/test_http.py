"""The shared HTTP helper: TLS, body cap while streaming, gzip, encoding errors."""

import asyncio
import gzip
import os
import socket
import subprocess
import sys
import threading

import pytest

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError, HttpPool, get, headers_for
from tests.fakes.llm import fake_llamacpp, llamacpp_metrics
from tests.fakes.server import FakeServer, Reply
from tests.support.tls import self_signed, serve_tls


def run(coro_fn):
    async def wrapper():
        pool = HttpPool()
        try:
            return await coro_fn(pool)
        finally:
            await pool.close()

    return asyncio.run(wrapper())


def raw_server(response: bytes, then_stream: int = 0):
    """A socket server that writes `response` then `then_stream` bytes of 'a' in chunks (no length)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    sent = {"bytes": 0}

    def serve():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(response)
            chunk = b"a" * 65536
            try:
                while sent["bytes"] < then_stream:
                    conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    sent["bytes"] += len(chunk)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    return listener, sent


def test_chunked_body_over_cap_stops_reading_early():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    listener, sent = raw_server(head, then_stream=512 * 1024 * 1024)
    port = listener.getsockname()[1]
    target = TargetConfig(url=f"http://127.0.0.1:{port}", max_body_bytes=1024 * 1024, retries=0, timeout=10)
    with pytest.raises(FetchError) as err:
        run(lambda pool: get(pool, target, "/metrics"))
    listener.close()
    assert err.value.kind == "too_big" and "max_body_bytes (1048576)" in str(err.value)
    assert sent["bytes"] < 256 * 1024 * 1024  # the client hung up long before the server was done


def test_gzip_body_is_decoded_and_capped_decoded():
    page = ("# TYPE x gauge\n" + "x 1\n" * 20000).encode()
    packed = gzip.compress(page)
    with FakeServer({"/m": Reply(packed, headers={"Content-Encoding": "gzip"}, content_type="text/plain")}) as fake:
        body = run(lambda pool: get(pool, TargetConfig(url=fake.url), "/m")).body
        assert body == page
        with pytest.raises(FetchError) as err:
            run(lambda pool: get(pool, TargetConfig(url=fake.url, max_body_bytes=len(packed) * 2), "/m"))
    assert err.value.kind == "too_big"


def test_bad_utf8_and_json_errors_are_one_line():
    with FakeServer({"/t": Reply(b"ok \xc3\x28 bad"), "/j": Reply("{not json")}) as fake:
        target = TargetConfig(url=fake.url)
        resp = run(lambda pool: get(pool, target, "/t"))
        with pytest.raises(FetchError) as err:
            resp.text()
        assert err.value.kind == "bad_encoding" and "not valid UTF-8" in str(err.value)
        with pytest.raises(FetchError) as err:
            run(lambda pool: get(pool, target, "/j")).json()
        assert err.value.kind == "bad_body"


def test_one_client_per_target_kept_across_requests():
    # A client per target: a pool shared by many targets costs O(N^2) per gather (docs/performance.md).
    pool = HttpPool()
    first = TargetConfig(url="http://127.0.0.1:1", name="a")
    a = pool.client(first)
    assert pool.client(first) is a and pool.client(TargetConfig(url="http://127.0.0.1:1", name="a")) is a
    b = pool.client(TargetConfig(url="http://127.0.0.1:1", name="b"))  # same server, another target
    c = pool.client(TargetConfig(url="https://127.0.0.1:3", insecure_skip_verify=True))
    assert len({id(a), id(b), id(c)}) == 3
    asyncio.run(pool.close())
    assert pool.client(first) is not a  # closed clients are not handed out again
    asyncio.run(pool.close())


def test_credentials_not_in_errors_and_auth_optional():
    target = TargetConfig(url="http://user:pw@127.0.0.1:1", bearer_token="tok", headers={"X-A": "1"}, retries=0)
    with pytest.raises(FetchError) as err:
        run(lambda pool: get(pool, target, "/metrics"))
    assert "pw" not in str(err.value) and "tok" not in str(err.value) and err.value.kind == "refused"
    assert headers_for(target) == {"X-A": "1", "Authorization": "Bearer tok"}
    assert headers_for(target, auth=False) == {"X-A": "1"}


@pytest.mark.parametrize("key", [None, "", "  ", "s3cret\n"])
def test_the_sample_configs_bearer_token_from_an_unset_empty_or_blank_variable(tmp_path, key):
    """`bearer_token: ${LLAMA_API_KEY:-}` (the sample config): nothing set sends no Authorization at all (not
    `Bearer ` alone), in the agent's scrape and in doctor's look, and neither complains."""
    fake = fake_llamacpp(llamacpp_metrics(10, 20, 1.0, 2.0))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"targets:\n  - url: {fake.url}\n    type: llamacpp\n    name: llama\n    bearer_token: ${{LLAMA_API_KEY:-}}\n"
        "gpu:\n  enabled: false\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LLAMA_API_KEY"} | (
        {} if key is None else {"LLAMA_API_KEY": key}
    )
    with fake:
        for args, says in ((["--once"], "llm_server,host="), (["doctor"], "Everything configured can work.")):
            done = subprocess.run(
                [sys.executable, "-m", "telegraf_llm_input", "--config", str(config), *args],
                capture_output=True, text=True, timeout=120, env=env,
            )  # fmt: skip
            assert done.returncode == 0 and says in done.stdout, done.stdout + done.stderr
            assert "W! " not in done.stderr and "E! " not in done.stderr, done.stderr
    sent = {r.headers.get("Authorization") for r in fake.requests}
    assert sent == ({"Bearer s3cret"} if key == "s3cret\n" else {None}), sent


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


def test_tls_verified_by_default_ca_and_skip(tls_files):
    fake = FakeServer({"/metrics": Reply("x 1\n")})
    url = serve_tls(fake, tls_files)
    with fake:
        with pytest.raises(FetchError) as err:
            run(lambda pool: get(pool, TargetConfig(url=url, retries=0), "/metrics"))
        assert err.value.kind == "tls"
        ok = run(lambda pool: get(pool, TargetConfig(url=url, tls_ca=str(tls_files / "cert.pem")), "/metrics"))
        assert ok.text() == "x 1\n"
        skip = run(lambda pool: get(pool, TargetConfig(url=url, insecure_skip_verify=True), "/metrics"))
        assert skip.status == 200
