"""TGI, SGLang, Ollama, OpenAI, json and prometheus targets, scraped twice with moving numbers."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from telegraf_llm_input.config.targets import JsonFieldConfig, TargetConfig
from telegraf_llm_input.http import HttpPool
from telegraf_llm_input.servers import make_adapter
from telegraf_llm_input.sources.base import GatherContext
from telegraf_llm_input.sources.target import ServerSource
from tests.fakes.llm import fake_ollama, fake_openai
from tests.fakes.llm_more import fake_sglang, fake_tgi, sglang_page, tgi_page
from tests.fakes.server import FakeServer, Reply

S = 1_000_000_000
B = [0.5, 1.0, 2.0]


def scrape(target, times):
    async def run():
        source = ServerSource(target, make_adapter(target), HttpPool().retain())
        out = [list(await source.gather(GatherContext(t, 5.0))) for t in times]
        await source.close()
        return out

    return asyncio.run(run())


def only(metrics, measurement="llm_server"):
    [m] = [m for m in metrics if m.measurement == measurement]
    return m


@pytest.mark.parametrize("kind", ["tgi", "auto"])
def test_tgi_model_from_info_errors_and_e2e(kind):
    p1 = tgi_page(100, {"validation": 2}, 3, 6, 20000, 30000, (B, [10, 50, 90, 100], 110.0))
    p2 = tgi_page(140, {"validation": 2, "overloaded": 8}, 1, 4, 26000, 34000, (B, [10, 70, 130, 150], 180.0))
    with fake_tgi([p1, p2] if kind == "tgi" else [p1, p1, p2]) as fake:
        first, second = scrape(TargetConfig(url=fake.url, type=kind), [0, 10 * S])
    f1 = only(first)
    assert f1.tags["model"] == "mistralai/Mistral-7B-Instruct-v0.3" and f1.tags["server_type"] == "tgi"
    assert f1.fields["requests_total"] == 102 and f1.fields["request_errors_total"] == 2
    assert f1.fields["requests_waiting"] == 3 and f1.fields["requests_running"] == 6
    f = only(second).fields
    # 48 more requests, 8 of them failed
    assert f["requests_per_s"] == pytest.approx(4.8) and f["error_ratio"] == pytest.approx(8 / 48)
    assert f["prompt_tokens_per_s"] == pytest.approx(600.0) and f["generation_tokens_per_s"] == pytest.approx(400.0)
    # e2e deltas [0, 20, 40, 50] (10 beyond 2 s): p50 rank 25 -> 1.0 + 1.0 * 5/20 = 1.25 s
    assert f["e2e_p50_ms"] == pytest.approx(1250.0)
    assert f["e2e_p99_ms"] == pytest.approx(2000.0)  # rank 49.5 in +Inf: highest finite bound
    assert f["e2e_mean_ms"] == pytest.approx(70.0 / 50 * 1000)


@pytest.mark.parametrize("kind", ["sglang", "auto"])
def test_sglang_sums_ranks(kind):
    m = "Qwen/Qwen2.5-7B-Instruct"
    p1 = sglang_page(m, 2, 3, [0.2, 0.4], 100, 200, 10, (B, [0, 0, 0, 0], 0.0))
    p2 = sglang_page(m, 2, 4, [0.5, 0.7], 500, 1200, 30, (B, [3, 4, 4, 4], 1.2))
    with fake_sglang([p1, p2] if kind == "sglang" else [p1, p1, p2]) as fake:
        first, second = scrape(TargetConfig(url=fake.url, type=kind), [0, 5 * S])
    f1 = only(first)
    assert f1.tags["model"] == m and f1.fields["requests_running"] == 6 and f1.fields["requests_waiting"] == 2
    assert f1.fields["kv_cache_usage_ratio"] == pytest.approx(0.3)
    f = only(second).fields
    assert f["generation_tokens_per_s"] == pytest.approx(200.0) and f["requests_per_s"] == pytest.approx(4.0)
    # ttft deltas [3, 4, 4, 4]: p50 rank 2 -> 0.5 * 2/3 s
    assert f["ttft_p50_ms"] == pytest.approx(1000 / 3)
    assert f["ttft_p90_ms"] == pytest.approx(500 + 500 * (3.6 - 3) / 1)


@pytest.mark.parametrize("kind", ["ollama", "auto"])
def test_ollama_loaded_models(kind):
    expires = (datetime.now(timezone.utc) + timedelta(minutes=4)).strftime(
        "%Y-%m-%dT%H:%M:%S.%f"
    ) + "123Z"  # Go: nanoseconds
    models = [
        {
            "name": "qwen2.5:1.5b",
            "model": "qwen2.5:1.5b",
            "size": 2_000_000_000,
            "size_vram": 1_500_000_000,
            "digest": "abc",
            "details": {"format": "gguf", "family": "qwen2", "parameter_size": "1.5B", "quantization_level": "Q4_K_M"},
            "expires_at": expires,
            "context_length": 8192,
        }
    ]
    with fake_ollama(models) as fake:
        [metrics] = scrape(TargetConfig(url=fake.url, type=kind), [0])
    server = only(metrics)
    assert server.fields["up"] == 1 and server.fields["models_loaded"] == 1 and server.tags["server_type"] == "ollama"
    loaded = only(metrics, "llm_model_loaded")
    assert loaded.tags["model"] == "qwen2.5:1.5b" and loaded.tags["target"] == fake.url
    assert loaded.fields["gpu_offload_ratio"] == pytest.approx(0.75)
    assert loaded.fields["vram_bytes"] == 1_500_000_000 and loaded.fields["context_length"] == 8192
    assert 200 < loaded.fields["seconds_until_unload"] <= 240


@pytest.mark.parametrize("kind", ["ollama", "lmstudio"])
def test_a_model_list_that_is_no_list_reads_as_no_models(kind):
    """`/api/ps` `models` (`/api/v0/models` `data`) of another shape: up, no models, no crash."""
    routes = {
        "ollama": {"/api/version": Reply({"version": "0.6.5"}), "/api/ps": Reply({"models": 5})},
        "lmstudio": {"/api/v0/models": Reply({"object": "list", "data": 5})},
    }[kind]
    with FakeServer(routes) as fake:
        [metrics] = scrape(TargetConfig(url=fake.url, type=kind), [0])
    server = only(metrics)
    assert server.fields["up"] == 1 and server.fields["models_loaded"] == 0
    assert [m for m in metrics if m.measurement == "llm_model_loaded"] == []


@pytest.mark.parametrize("kind", ["openai", "auto"])
def test_openai_compatible(kind):
    with fake_openai(["qwen2.5-7b-instruct", "text-embedding-nomic"]) as fake:
        [metrics] = scrape(TargetConfig(url=fake.url, type=kind), [0])
    servers = [m for m in metrics if m.measurement == "llm_server"]
    assert {m.tags["model"] for m in servers} == {"qwen2.5-7b-instruct", "text-embedding-nomic"}
    assert all(m.fields["up"] == 1 and m.tags["server_type"] == "openai" for m in servers)


def test_json_fields_gauges_counters_rates():
    docs = [
        {
            "response_time_ms": 812.5,
            "input_tokens": 1000,
            "output_tokens": 4000,
            "errors": 1,
            "stats": {"queue": [2, 5]},
        },
        {
            "response_time_ms": 640.0,
            "input_tokens": 1500,
            "output_tokens": 4600,
            "errors": 3,
            "stats": {"queue": [1, 5]},
        },
    ]
    fields = {
        "response_time_ms": JsonFieldConfig("response_time_ms"),
        "prompt_tokens_total": JsonFieldConfig("input_tokens", kind="counter", type="int"),
        "generation_tokens_total": JsonFieldConfig("output_tokens", kind="counter", type="int"),
        "request_errors_total": JsonFieldConfig("errors", kind="counter", type="int"),
        "requests_waiting": JsonFieldConfig("stats.queue.0", type="int"),
        "missing": JsonFieldConfig("nope.here"),
    }
    with FakeServer({"/metrics": [Reply(d) for d in docs]}) as fake:
        first, second = scrape(TargetConfig(url=fake.url, type="json", json_fields=fields), [0, 10 * S])
    assert only(first).fields["response_time_ms"] == 812.5 and only(first).fields["requests_waiting"] == 2
    f = only(second).fields
    assert f["prompt_tokens_per_s"] == 50.0 and f["generation_tokens_per_s"] == 60.0
    assert f["request_errors_per_s"] == pytest.approx(0.2) and "missing" not in f


def test_prometheus_any_page_globs_rates_percentiles():
    def page(hits, inflight, cum, total):
        return (
            "# HELP app_hits_total Hits.\n# TYPE app_hits_total counter\n"
            f'app_hits_total{{path="/a"}} {hits}\napp_hits_created{{path="/a"}} 1.7e9\n'
            f"# TYPE app_inflight gauge\napp_inflight {inflight}\n"
            "# TYPE go_goroutines gauge\ngo_goroutines 12\n"
            "# TYPE app_latency_seconds histogram\n"
            + "".join(f'app_latency_seconds_bucket{{le="{le}"}} {c}\n' for le, c in zip(["0.1", "1", "+Inf"], cum))
            + f"app_latency_seconds_count {cum[-1]}\napp_latency_seconds_sum {total}\n"
        )

    pages = [page(100, 3, [0, 0, 0], 0), page(160, 5, [2, 6, 6], 2.0)]
    with FakeServer({"/metrics": [Reply(p) for p in pages]}) as fake:
        target = TargetConfig(
            url=fake.url, type="prometheus", include=["app_*"], exclude=["app_inflight"], measurement="myapp"
        )
        _, second = scrape(target, [0, 20 * S])
    by = {tuple(sorted(m.tags.items())): m for m in second if m.measurement == "myapp"}
    hits = [m for m in by.values() if m.tags.get("path") == "/a"][0].fields
    assert hits["app_hits_total"] == 160 and hits["app_hits_per_s"] == pytest.approx(3.0)
    assert not any("created" in k for m in by.values() for k in m.fields)
    assert not any("inflight" in k or "goroutines" in k for m in by.values() for k in m.fields)
    lat = [m for m in by.values() if "app_latency_seconds_p50" in m.fields][0].fields
    # deltas [2, 6, 6]: p50 rank 3 -> 0.1 + 0.9 * 1/4
    assert lat["app_latency_seconds_p50"] == pytest.approx(0.325)
    assert lat["app_latency_seconds_mean"] == pytest.approx(2.0 / 6)
    assert only(second).fields["up"] == 1


def test_fixture_pages_have_the_documented_fields():
    """The parser helper's realistic fixtures read through each table."""
    from telegraf_llm_input.promtext import parse
    from telegraf_llm_input.servers import llamacpp, sglang, tgi
    from telegraf_llm_input.servers.promtable import read_page

    for module, name, expect in (
        (sglang, "sglang", {"requests_running", "kv_cache_usage_ratio"}),
        (tgi, "tgi", {"requests_waiting"}),
        (llamacpp, "llamacpp", {"requests_running"}),
    ):
        [r] = read_page(module.TABLE, parse(open(f"tests/fixtures/prometheus/{name}.txt").read()), "m")
        assert expect <= set(r.gauges), name
        assert {"prompt_tokens_total", "generation_tokens_total"} <= set(r.counters), name


def test_auto_detection_without_metrics_pages():
    """Servers started without their metrics flag are still identified by their info endpoints."""
    from telegraf_llm_input.servers import detect
    from telegraf_llm_input.servers.base import Fetcher
    from tests.fakes.llm import llamacpp_props
    from tests.fakes.llm_more import TGI_INFO

    cases = {
        "sglang": {
            "/get_server_info": Reply({"model_path": "Qwen/Qwen2.5-7B-Instruct", "tp_size": 1, "version": "0.4.9"})
        },
        "tgi": {"/info": Reply(TGI_INFO)},
        "llamacpp": {
            "/metrics": Reply("metrics disabled", status=501),
            "/props": Reply(llamacpp_props()),
            "/v1/models": Reply({"object": "list", "data": []}),
        },
        "openai": {"/v1/models": Reply({"object": "list", "data": []})},
        None: {"/": Reply("hello")},
    }
    for expected, routes in cases.items():
        with FakeServer(routes) as fake:

            async def go():
                pool = HttpPool()
                try:
                    return await detect(Fetcher(pool, TargetConfig(url=fake.url)))
                finally:
                    await pool.close()

            assert asyncio.run(go()) == expected
