import asyncio

import pytest

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import HttpPool
from telegraf_llm_input.servers import make_adapter
from telegraf_llm_input.sources.base import GatherContext
from telegraf_llm_input.sources.target import ServerSource
from tests.fakes.llm import fake_llamacpp, llamacpp_loading, llamacpp_metrics, llamacpp_props, llamacpp_slots
from tests.fakes.server import Reply

S = 1_000_000_000


def scrape(target, times):
    async def run():
        source = ServerSource(target, make_adapter(target), HttpPool().retain())
        out = [[m for m in await source.gather(GatherContext(t, 5.0)) if m.measurement == "llm_server"] for t in times]
        await source.close()
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("kind", ["llamacpp", "auto"])
def test_tokens_per_s_from_counter_deltas_slots_and_model(kind):
    pages = [
        llamacpp_metrics(1000, 2000, 2.0, 40.0, processing=1, decode_calls=500),
        llamacpp_metrics(1600, 2500, 2.5, 50.0, processing=2, decode_calls=900),
    ]
    if kind == "auto":
        pages.insert(0, pages[0])
    with fake_llamacpp(pages, slots=4, busy=2, api_key="k3y") as fake:
        fake.script("/props", Reply(llamacpp_props(4, alias="qwen-1.5b")))
        target = TargetConfig(url=fake.url, type=kind, bearer_token="k3y")
        [[first], [second]] = scrape(target, [0, 20 * S])
        paths = fake.paths()
        metrics_auth = [r.headers.get("Authorization") for r in fake.requests if r.path == "/metrics"]
    assert first.tags["model"] == "qwen-1.5b" and first.tags["server_type"] == "llamacpp"
    assert first.fields["slots_total"] == 4 and first.fields["slots_busy"] == 2
    assert first.fields["generation_tokens_total"] == 2000 and "generation_tokens_per_s" not in first.fields
    f = second.fields
    assert f["up"] == 1 and f["busy"] == 0 and f["requests_running"] == 2
    assert f["prompt_tokens_per_s"] == pytest.approx(600 / 20)
    assert f["generation_tokens_per_s"] == pytest.approx(500 / 20)
    # speed while generating: 500 tokens in 10 busy seconds (not the server's 45.6 gauge)
    assert f["generation_speed_tokens_per_s"] == pytest.approx(50.0)
    assert f["prompt_speed_tokens_per_s"] == pytest.approx(1200.0)
    assert "kv_cache_usage_ratio" not in f
    assert set(metrics_auth) == {"Bearer k3y"}
    # a server that answers: no /health, and /props (model, slots, build) once, not every gather
    assert "/health" not in paths and paths.count("/props") == 1 and paths.count("/slots") == 2


def test_metrics_blocked_while_decoding_is_busy_not_down():
    blocked = Reply(llamacpp_metrics(1, 1, 1, 1), delay=2.0)
    with fake_llamacpp([blocked], slots=1, api_key="k3y") as fake:
        fake.script("/slots", Reply([], delay=2.0))
        [[m]] = scrape(TargetConfig(url=fake.url, type="llamacpp", timeout=0.3, bearer_token="k3y"), [0])
        health_auth = [r.headers.get("Authorization") for r in fake.requests if r.path == "/health"]
    assert m.fields["up"] == 1 and m.fields["busy"] == 1
    assert m.fields["slots_total"] == 1  # from /props
    assert m.tags["model"] == "qwen2.5-1.5b-q4_k_m.gguf"
    # neither /metrics nor /slots answered: /health (open, so it gets no token) said the server is there
    assert health_auth == [None]


def test_blocked_and_health_gone_is_down():
    blocked = Reply(llamacpp_metrics(1, 1, 1, 1), delay=2.0)
    with fake_llamacpp([blocked], slots=1) as fake:
        fake.script("/slots", Reply([], delay=2.0))
        fake.script("/health", Reply({"status": "ok"}, delay=2.0))
        [[m]] = scrape(TargetConfig(url=fake.url, type="llamacpp", timeout=0.3, retries=0), [0])
    assert m.fields["up"] == 0


def test_loading_model_then_loaded():
    with fake_llamacpp(llamacpp_metrics(0, 0, 0, 0)) as fake:
        llamacpp_loading(fake)
        [[m]] = scrape(TargetConfig(url=fake.url, type="llamacpp"), [0])
    assert m.fields["loading"] == 1 and m.fields["up"] == 0
    with fake_llamacpp(llamacpp_metrics(0, 0, 0, 0)) as fake:
        llamacpp_loading(fake)

        async def run():
            target = TargetConfig(url=fake.url, type="llamacpp")
            source = ServerSource(target, make_adapter(target), HttpPool().retain())
            first = await source.gather(GatherContext(0, 5.0))
            fake.script("/health", Reply({"status": "ok"}))
            fake.script("/metrics", Reply(llamacpp_metrics(0, 0, 0, 0)))
            fake.script("/slots", Reply([]))
            fake.script("/props", Reply(llamacpp_props(1, alias="loaded-now")))
            second = await source.gather(GatherContext(10 * S, 5.0))
            await source.close()
            return [[m for m in batch if m.measurement == "llm_server"] for batch in (first, second)]

        [[loading], [loaded, closed]] = asyncio.run(run())
    assert loading.fields["loading"] == 1 and loaded.fields["up"] == 1
    assert loaded.tags["model"] == "loaded-now"  # /props asked again once the model is there
    # the series that said loading (no model known yet) is closed: up, not loading
    assert closed.tags.get("model") is None and closed.fields["up"] == 1 and closed.fields["loading"] == 0


def test_restart_with_another_model_between_gathers():
    # The server restarted (counters went back) with another model before the next gather: that gather already
    # says the new model, though /props was not due yet.
    with fake_llamacpp([llamacpp_metrics(1000, 2000, 2.0, 40.0, decode_calls=500)]) as fake:
        fake.script("/props", Reply(llamacpp_props(2, alias="first")), Reply(llamacpp_props(2, alias="second")))

        async def run():
            target = TargetConfig(url=fake.url, type="llamacpp")
            source = ServerSource(target, make_adapter(target), HttpPool().retain())
            out = [await source.gather(GatherContext(0, 5.0))]
            out.append(await source.gather(GatherContext(10 * S, 5.0)))
            fake.script("/metrics", Reply(llamacpp_metrics(5, 10, 0.1, 0.2, decode_calls=3)))
            out.append(await source.gather(GatherContext(20 * S, 5.0)))
            await source.close()
            return [[m for m in batch if m.measurement == "llm_server"] for batch in out]

        [[a], [b], [c]] = asyncio.run(run())
        props_asked = fake.paths().count("/props")
    assert a.tags["model"] == b.tags["model"] == "first" and c.tags["model"] == "second"
    assert props_asked == 2


def test_older_build_kv_cache_ratio_and_fixture():
    with fake_llamacpp(open("tests/fixtures/prometheus/llamacpp_old.txt").read()) as fake:
        [[m]] = scrape(TargetConfig(url=fake.url, type="llamacpp"), [0])
    assert 0 <= m.fields["kv_cache_usage_ratio"] <= 1


def test_wrong_token_is_down():
    with fake_llamacpp(llamacpp_metrics(1, 1, 1, 1), api_key="right") as fake:
        [[m]] = scrape(TargetConfig(url=fake.url, type="llamacpp", bearer_token="wrong"), [0])
    assert m.fields["up"] == 0


def test_timings_object_from_a_completion():
    from telegraf_llm_input.servers.llamacpp import timings_fields

    t = {
        "cache_n": 12,
        "prompt_n": 40,
        "prompt_ms": 80.0,
        "prompt_per_token_ms": 2.0,
        "prompt_per_second": 500.0,
        "predicted_n": 100,
        "predicted_ms": 2500.0,
        "predicted_per_token_ms": 25.0,
        "predicted_per_second": 999.0,
    }
    f = timings_fields(t)
    assert f["prompt_tokens_per_s"] == pytest.approx(500.0)
    assert f["generation_tokens_per_s"] == pytest.approx(40.0)  # 100 / 2.5 s, not the object's own 999
    assert f["tpot_ms"] == pytest.approx(25.0) and f["cached_tokens"] == 12
    assert timings_fields({"predicted_n": "x"}) == {} and timings_fields(None) == {}


def test_metrics_disabled_still_gives_health_and_slots():
    with fake_llamacpp(llamacpp_metrics(1, 1, 1, 1), slots=3, busy=1) as fake:
        fake.script(
            "/metrics",
            Reply(
                {
                    "error": {
                        "code": 501,
                        "message": "This server does not support metrics endpoint. Start it with `--metrics`",
                    }
                },
                status=501,
            ),
        )
        [[m]] = scrape(TargetConfig(url=fake.url, type="llamacpp"), [0])
    assert m.fields["up"] == 1 and m.fields["busy"] == 0 and m.fields["slots_busy"] == 1
    assert "generation_tokens_total" not in m.fields


def test_a_busy_gather_keeps_the_baseline_so_no_token_goes_uncounted():
    """`/metrics` blocked for one gather (busy=1): the next answer's rates cover both intervals."""
    blocked = Reply(llamacpp_metrics(1, 1, 1, 1), delay=2.0)
    pages = [Reply(llamacpp_metrics(1000, 2000, 2.0, 40.0)), blocked, Reply(llamacpp_metrics(1600, 2900, 3.0, 58.0))]
    with fake_llamacpp(pages, slots=1) as fake:
        fake.script("/slots", Reply([]), Reply([], delay=2.0), Reply([]))
        a, b, c = scrape(TargetConfig(url=fake.url, type="llamacpp", timeout=0.3), [0, 10 * S, 20 * S])
    assert b[0].fields["busy"] == 1 and "generation_tokens_per_s" not in b[0].fields
    f = c[0].fields
    assert f["busy"] == 0
    assert f["generation_tokens_per_s"] * 20 == pytest.approx(900)  # every token, over the 20 s since the last
    assert f["prompt_tokens_per_s"] * 20 == pytest.approx(600)
    assert f["generation_speed_tokens_per_s"] == pytest.approx(900 / 18)


def test_restarted_and_loading_is_one_point_on_the_old_series_and_nothing_says_up():
    """Down (restarting), then loading: the loading gather's only llm_server point is the old model's series with
    up=0, loading=1 (no `up=1` closing it while nothing serves); once loaded, the model is up again."""
    with fake_llamacpp(llamacpp_metrics(1, 1, 1, 1)) as fake:
        fake.script("/props", Reply(llamacpp_props(1, alias="old")))

        def between(i):
            if i == 1:
                fake.script("/metrics", Reply("", status=500))
            if i == 2:
                llamacpp_loading(fake)
            if i == 3:
                for path, reply in (
                    ("/health", {"status": "ok"}),
                    ("/metrics", llamacpp_metrics(0, 0, 0, 0)),
                    ("/slots", []),
                    ("/props", llamacpp_props(1, alias="old")),
                ):
                    fake.script(path, Reply(reply))

        async def run():
            target = TargetConfig(url=fake.url, type="llamacpp", retries=0)
            source = ServerSource(target, make_adapter(target), HttpPool().retain())
            out = []
            for i in range(4):
                between(i)
                out.append(
                    [m for m in await source.gather(GatherContext(i * 10 * S, 5.0)) if m.measurement == "llm_server"]
                )
            await source.close()
            return out

        up, down, loading, loaded = asyncio.run(run())
    assert [m.tags["model"] for m in up] == ["old"] and down[0].fields["up"] == 0
    [point] = loading
    assert point.tags["model"] == "old" and point.fields["up"] == 0 and point.fields["loading"] == 1
    [point] = loaded
    assert point.tags["model"] == "old" and point.fields["up"] == 1 and point.fields["loading"] == 0


def test_health_is_asked_inside_the_budget_when_the_timeout_is_longer_than_the_gather():
    """The target's timeout (10 s) is longer than the gather's budget: `/metrics` and `/slots` stop early enough
    that `/health` still gets an answer in time (busy, not "no answer within -0.003s")."""
    blocked = Reply(llamacpp_metrics(1, 1, 1, 1), delay=5.0)
    with fake_llamacpp([blocked], slots=1) as fake:
        fake.script("/slots", Reply([], delay=5.0))
        fake.script("/props", Reply(llamacpp_props(1), delay=5.0))
        fake.script("/health", Reply({"status": "ok"}, delay=0.15))

        async def run():
            target = TargetConfig(url=fake.url, type="llamacpp", timeout=10.0)
            source = ServerSource(target, make_adapter(target), HttpPool().retain())
            out = await source.gather(GatherContext(0, 1.0))
            await source.close()
            return [m for m in out if m.measurement == "llm_server"]

        [m] = asyncio.run(run())
    assert m.fields["up"] == 1 and m.fields["busy"] == 1


def test_prefix_cache_speculative_decoding_batching_and_context_from_the_page_and_slots():
    """The names llama-server writes (server-task.cpp `to_metrics`, server-context.cpp `to_json`) -> vLLM's fields
    with vLLM's meaning: queries are every prompt token looked up (processed + reused), hits the reused ones."""
    pages = [
        llamacpp_metrics(1000, 2000, 2.0, 40.0, cached=500, spec=(100, 400, 300), busy_per_decode=1.5),
        llamacpp_metrics(1600, 2500, 2.5, 50.0, cached=1400, spec=(150, 600, 380), busy_per_decode=1.75),
    ]
    with fake_llamacpp(pages, slots=2) as fake:
        fake.script("/slots", Reply(llamacpp_slots(1, 2, n_ctx=1024, prompt=16, decoded=240)))
        [[first], [second]] = scrape(TargetConfig(url=fake.url, type="llamacpp"), [0, 10 * S])
    assert first.fields["prefix_cache_hits_total"] == 500 and first.fields["prefix_cache_queries_total"] == 1500
    assert first.fields["spec_decode_drafts_total"] == 100 and "prefix_cache_hit_ratio" not in first.fields
    f = second.fields
    assert f["prefix_cache_queries_total"] == 3000
    assert f["prefix_cache_hit_ratio"] == pytest.approx(900 / (600 + 900))
    assert f["spec_decode_acceptance_ratio"] == pytest.approx(80 / 200)
    assert f["spec_decode_mean_accept_length"] == pytest.approx(1 + 80 / 50)
    assert f["busy_slots_per_decode"] == pytest.approx(1.75)
    # no n_past on this build: n_prompt_tokens already counts the decoded tokens (16 + 240 of 1024)
    assert f["context_used_ratio"] == pytest.approx(256 / 1024)


def test_a_build_with_n_past_reads_it():
    slots = llamacpp_slots(1, 1, n_ctx=1000)
    slots[0]["n_past"] = 250
    with fake_llamacpp(llamacpp_metrics(1, 1, 1, 1)) as fake:
        fake.script("/slots", Reply(slots))
        [[m]] = scrape(TargetConfig(url=fake.url, type="llamacpp"), [0])
    assert m.fields["context_used_ratio"] == pytest.approx(0.25)
