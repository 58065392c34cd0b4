"""The prometheus output: promtool-valid page, scraped by a real Prometheus."""

import asyncio
import subprocess
import threading
import time

import httpx
import pytest

from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sinks.prometheus import PrometheusSink, SeriesStore
from tests.support.procs import ManagedProcess, find_binary, free_port, http_ok, wait_until


def sample(t=1):
    return [
        Metric("llm_agent", {"host": "box"}, {"gathers": 5, "gather_ms": 1.5}, t),
        Metric("llm_test", {"server": 'we"ird\\\nname', "0bad": "x"}, {"up": True, "model": "qwen", "tokens": 12}, t),
    ]


def test_page_types_counters_skips_strings_and_expires():
    store = SeriesStore(expire_s=10)
    store.update(sample(), now=100.0)
    page = store.render(now=105.0)
    assert "# TYPE llm_agent_gathers_total counter\nllm_agent_gathers_total{host=\"box\"} 5\n" in page
    assert "# TYPE llm_agent_gather_seconds gauge\nllm_agent_gather_seconds{host=\"box\"} 0.0015\n" in page
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
        bad = subprocess.run([promtool, "check", "metrics"], input=page.content.replace(b"_total", b""),
                             capture_output=True, timeout=30)
        assert bad.returncode != 0  # promtool does catch an untyped-suffix counter

        web = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\n"
            f"scrape_configs: [{{job_name: llm, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]\n")
        prom = ManagedProcess([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
                              tmp_path / "prometheus.log")
        try:
            wait_until(http_ok(f"http://127.0.0.1:{web}/-/ready"), 60, "prometheus", prom.proc, prom.log_path)
            result = {}

            def seen():
                r = httpx.get(f"http://127.0.0.1:{web}/api/v1/query", params={"query": "llm_agent_gathers_total"}, timeout=5)
                result["data"] = r.json()["data"]["result"]
                return bool(result["data"])
            wait_until(seen, 60, "series in Prometheus")
            assert result["data"][0]["metric"]["host"] == "box"
            assert result["data"][0]["value"][1] == "5"
            meta = httpx.get(f"http://127.0.0.1:{web}/api/v1/metadata", params={"metric": "llm_agent_gathers_total"}, timeout=5)
            assert meta.json()["data"]["llm_agent_gathers_total"][0]["type"] == "counter"
        finally:
            prom.stop()
    finally:
        asyncio.run_coroutine_threadsafe(sink.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
