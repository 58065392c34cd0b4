"""The prometheus output: promtool-valid page, scraped by a real Prometheus."""

import asyncio
import socket
import subprocess
import threading
import time

import h11
import httpx
import pytest

from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sinks.prometheus import PrometheusSink, SeriesStore
from tests.support.procs import RealPrometheus, find_binary, free_port, wait_until


def sample(t=1):
    return [
        Metric("llm_agent", {"host": "box"}, {"gathers": 5, "gather_ms": 1.5}, t),
        Metric("llm_test", {"server": 'we"ird\\\nname', "0bad": "x"}, {"up": True, "model": "qwen", "tokens": 12}, t),
    ]


def test_page_types_counters_skips_strings_and_expires():
    store = SeriesStore(expire_s=10)
    store.update(sample(), now=100.0)
    page = store.render(now=105.0)
    assert '# TYPE llm_agent_gathers_total counter\nllm_agent_gathers_total{host="box"} 5\n' in page
    assert '# TYPE llm_agent_gather_seconds gauge\nllm_agent_gather_seconds{host="box"} 0.0015\n' in page
    assert 'llm_test_up{server="we\\"ird\\\\\\nname",tag_0bad="x"} 1' in page
    assert "model" not in page
    assert store.render(now=111.0) == ""


def test_promtool_and_real_prometheus_scrape(tmp_path):
    promtool, prometheus = find_binary("promtool"), find_binary("prometheus")
    if not promtool or not prometheus:
        pytest.skip("prometheus/promtool not installed: apt-get install prometheus (scripts/test.sh does)")
    port = free_port()
    sink = PrometheusSink("prometheus", f"127.0.0.1:{port}", "/metrics", 60)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(sink.write(sample(time.time_ns())), loop).result(10)
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
        check = subprocess.run([promtool, "check", "metrics"], input=page.content, capture_output=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        bad = subprocess.run(
            [promtool, "check", "metrics"], input=page.content.replace(b"_total", b""), capture_output=True, timeout=30
        )
        assert bad.returncode != 0  # promtool does catch an untyped-suffix counter

        prom = RealPrometheus(
            prometheus,
            tmp_path,
            "global: {scrape_interval: 1s}\n"
            f"scrape_configs: [{{job_name: llm, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]\n",
        )
        try:
            prom.wait_ready()
            result = {}

            def seen():
                r = httpx.get(f"{prom.url}/api/v1/query", params={"query": "llm_agent_gathers_total"}, timeout=5)
                result["data"] = r.json()["data"]["result"]
                return bool(result["data"])

            wait_until(seen, 60, "series in Prometheus")
            assert result["data"][0]["metric"]["host"] == "box"
            assert result["data"][0]["value"][1] == "5"
            meta = httpx.get(f"{prom.url}/api/v1/metadata", params={"metric": "llm_agent_gathers_total"}, timeout=5)
            assert meta.json()["data"]["llm_agent_gathers_total"][0]["type"] == "counter"
        finally:
            prom.stop()
    finally:
        asyncio.run_coroutine_threadsafe(sink.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)


PROMTOOL = find_binary("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed: apt-get install prometheus")


def promtool_check(page: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=page.encode("utf-8", "replace"), capture_output=True, timeout=30
    )


@needs_promtool
def test_every_schema_field_is_exposed_and_promtool_accepts_it():
    from telegraf_llm_input.schema import ALL

    store = SeriesStore(expire_s=60)
    metrics = []
    for m in ALL:
        fields = {
            f.name.replace("*", "stop"): (1 if f.type == "int" else 1.5)
            for f in m.fields
            if f.type in ("int", "float") and f.name != "*"
        }
        metrics.append(Metric(m.name, {t.strip("<>").replace(" ", "_"): "v" for t in m.tags}, fields, 1))
    store.update(metrics, now=0.0)
    assert len(store) == sum(len(m.fields) for m in metrics)  # nothing of ours renamed away or dropped
    check = promtool_check(store.render(now=0.0))
    assert check.returncode == 0, check.stderr.decode()


@needs_promtool
def test_names_of_a_prometheus_target_are_repaired_or_dropped_once(caplog):
    """Gauges ending in `_total`, camelCase, types in names, our names after unit conversion."""
    fields = {
        "app_queue_total": 3.0,
        "app_hits_total": 5.0,
        "app_hits_per_s": 0.5,
        "rpc_seconds_count": 4.0,
        "rpc_seconds_sum": 1.5,
        "cacheHits": 2.0,
        "bar_gauge": 1.0,
        "scrape_seconds": 0.2,
        "scrape_ms": 3.0,
        "busy_ms_total": 1.0,
        "uptime_minutes": 7.0,
        "x_ms": 1.0,
        "x_seconds": 2.0,
    }
    store = SeriesStore(expire_s=60)
    for _ in range(2):
        store.update([Metric("llm_server", {"target": "a", "le": "0.5", "modelName": "q"}, fields, 1)], now=0.0)
    page = store.render(now=0.0)
    check = promtool_check(page)
    assert check.returncode == 0, check.stderr.decode() + page
    names = {line.split("{")[0] for line in page.splitlines() if not line.startswith("#")}
    assert {
        "llm_server_app_queue_total_value",
        "llm_server_app_hits_total_value",
        "llm_server_cache_hits",
        "llm_server_rpc_seconds_count_value",
        "llm_server_bar",
        "llm_server_scrape_seconds",
        "llm_server_x_seconds",
    } <= names
    assert 'llm_server_scrape_seconds{model_name="q",tag_le="0.5",target="a"} 0.003' in page  # ours, not theirs
    dropped = [r.getMessage() for r in caplog.records if "not exposed" in r.getMessage()]
    assert len(dropped) == 4, dropped  # scrape_seconds (taken), x_seconds or x_ms, busy_ms_total, uptime_minutes
    assert any("scrape_seconds not exposed" in d and "belongs to llm_server scrape_ms" in d for d in dropped)


@needs_promtool
def test_any_input_gives_a_page_promtool_accepts():
    from hypothesis import HealthCheck, given, settings, strategies as st

    from telegraf_llm_input.schema import ALL

    names = st.one_of(st.sampled_from([m.name for m in ALL]), st.text(min_size=1, max_size=12))
    known = [f.name for m in ALL for f in m.fields if "*" not in f.name]
    field_names = st.one_of(
        st.sampled_from(known),
        st.text(min_size=1, max_size=16),
        st.from_regex(r"[a-zA-Z][a-zA-Z0-9_:]{0,12}_(total|count|sum|bucket|ms|s|gauge)", fullmatch=True),
    )
    values = st.one_of(
        st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=5)
    )
    metrics = st.builds(
        Metric,
        names,
        st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
        st.dictionaries(field_names, values, min_size=1, max_size=6),
        st.just(1),
    )

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(metrics, min_size=1, max_size=8))
    def check(batch):
        store = SeriesStore(expire_s=60)
        store.update(batch, now=0.0)
        page = store.render(now=0.0)
        result = promtool_check(page)
        assert result.returncode == 0, result.stderr.decode() + "\n" + page

    check()


def page_server(store_metrics=None):
    """A started sink on a free port (in a loop of its own thread): (sink, port, stop)."""
    sink = PrometheusSink("prometheus", f"127.0.0.1:{free_port()}", "/metrics", 60)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(sink.write(store_metrics or sample(time.time_ns())), loop).result(10)

    async def close():
        await sink.close()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=5)  # the connections' handlers (the clients have closed theirs)

    def stop():
        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    return sink, sink.port, stop


def exchange(port: int, data: bytes, methods: list[str]) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Send `data` on one connection and read the answers to `methods` (h11, client side), then whether it closed."""
    conn = h11.Connection(h11.CLIENT)
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        for method in methods:
            conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))  # h11's state: one request
            conn.send(h11.EndOfMessage())
            status, headers, body = 0, {}, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                elif isinstance(event, h11.Response):
                    status, headers = event.status_code, dict(event.headers)
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
            answers.append((status, headers, body))
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    return answers


def request(method: str, target: str, *head: str) -> bytes:
    return (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{''.join(h + chr(13) + chr(10) for h in head)}\r\n".encode()
    )


def test_the_page_server_keeps_the_connection_and_answers_each_request():
    _, port, stop = page_server()
    try:
        data = request("GET", "/metrics") + request("HEAD", "/metrics?x=1") + request("GET", "/other")
        data += request("POST", "/metrics", "Content-Length: 3") + b"abc" + request("GET", "/metrics")
        got = exchange(port, data, ["GET", "HEAD", "GET", "POST", "GET"])
    finally:
        stop()
    assert [status for status, _, _ in got] == [200, 200, 404, 405, 200]  # all on one connection, pipelined
    page, head = got[0], got[1]
    assert page[1][b"content-type"].startswith(b"text/plain; version=0.0.4") and b"llm_agent_gathers_total" in page[2]
    assert head[2] == b"" and head[1][b"content-length"] == str(len(page[2])).encode()
    assert got[4][2] == page[2]


@pytest.mark.parametrize(
    "data, status",
    [
        (request("GET", "/metrics", "X-Big: " + "a" * 200_000), 431),
        (request("GET", "/metrics", "Content-Length: \xb2"), 400),
        (request("GET", "/metrics", "Transfer-Encoding: gzip, chunked"), 501),
        (request("POST", "/metrics", "Content-Length: 100000") + b"a" * 100_000, 413),
        (b"GET /metrics\r\n\r\n", 400),
    ],
    ids=[
        "head-over-64KiB",
        "content-length-superscript-2",
        "transfer-encoding-gzip-chunked",
        "body-too-big",
        "http0.9",
    ],
)
def test_a_bad_or_too_big_request_gets_its_4xx_and_the_connection_closes(data, status):
    _, port, stop = page_server()
    try:
        [(got, headers, _)] = exchange(port, data, ["GET", "GET"])
    finally:
        stop()
    assert (got, headers.get(b"connection")) == (status, b"close")


def test_help_names_the_unit_the_value_was_scaled_to():
    store = SeriesStore(expire_s=60)
    store.update(sample(), now=0.0)
    page = store.render(now=0.0)
    help_line = next(line for line in page.splitlines() if line.startswith("# HELP llm_agent_gather_seconds "))
    assert help_line.endswith("(seconds)") and "(ms)" not in page
