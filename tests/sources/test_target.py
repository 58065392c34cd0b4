"""llm_server through the public path: a fake vLLM page that moves, scraped by ServerSource."""

import asyncio
import logging

import pytest

from telegraf_llm_input import histogram
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import HttpPool
from telegraf_llm_input.promtext import parse
from telegraf_llm_input.servers import make_adapter
from telegraf_llm_input.servers.promtable import read_page
from telegraf_llm_input.servers.vllm import TABLE
from telegraf_llm_input.sources.base import GatherContext
from telegraf_llm_input.sources.target import ServerSource
from tests.fakes.llm import Snap, fake_vllm, vllm_page

S = 1_000_000_000
BOUNDS = [0.1, 0.5, 1.0]
M = "Qwen/Qwen2.5-7B-Instruct"


def scrape_all(target: TargetConfig, times: list[int]) -> list[list]:
    async def run():
        pool = HttpPool()
        source = ServerSource(target, make_adapter(target), pool.retain())
        out = [list(await source.gather(GatherContext(t, 5.0))) for t in times]
        await source.close()
        return out

    return asyncio.run(run())


def by_model(metrics):
    return {m.tags.get("model"): m for m in metrics if m.measurement == "llm_server"}


def snap(prompt, gen, stop, length, ttft_cum, ttft_sum, running=3, waiting=1, kv=0.25):
    return Snap(
        running=running,
        waiting=waiting,
        kv=kv,
        prompt=prompt,
        generation=gen,
        finished={"stop": stop, "length": length},
        preemptions=1,
        hists={"ttft": (BOUNDS, ttft_cum, ttft_sum), "e2e": (BOUNDS, ttft_cum, ttft_sum)},
    )


PAGE1 = vllm_page({M: snap(1000, 5000, 10, 2, [2, 5, 6, 6], 1.8)}, engines=2)
PAGE2 = vllm_page({M: snap(1400, 5600, 16, 4, [2, 9, 14, 14], 6.0)}, engines=2)


@pytest.mark.parametrize("kind", ["vllm", "auto"])
def test_vllm_rates_and_interval_percentiles(kind):
    pages = [PAGE1, PAGE2] if kind == "vllm" else [PAGE1, PAGE1, PAGE2]  # detection reads /metrics once
    with fake_vllm(pages) as fake:
        first, second = scrape_all(TargetConfig(url=fake.url, type=kind, tags={"rack": "a"}), [100 * S, 110 * S])
    f1 = by_model(first)[M]
    assert f1.tags["server_type"] == "vllm" and f1.tags["target"] == fake.url and f1.tags["rack"] == "a"
    # first scrape: counters and gauges only (two engines summed; kv averaged)
    assert f1.fields["prompt_tokens_total"] == 1000
    assert f1.fields["requests_total"] == 12 and f1.fields["requests_finished_stop_total"] == 10
    assert f1.fields["requests_running"] == 3 and f1.fields["kv_cache_usage_ratio"] == pytest.approx(0.25)
    assert f1.fields["up"] == 1 and "scrape_ms" in f1.fields
    assert not [k for k in f1.fields if k.endswith("_per_s") or "_p50" in k or "_mean" in k]
    f2 = by_model(second)[M].fields
    # 10 s apart: 400 prompt, 600 generated tokens, 8 finished requests
    assert f2["prompt_tokens_per_s"] == pytest.approx(40.0)
    assert f2["generation_tokens_per_s"] == pytest.approx(60.0)
    assert f2["requests_per_s"] == pytest.approx(0.8)
    # interval ttft: bucket deltas [0, 4, 8, 8], 8 observations summing to 4.2 s
    # p50: rank 4 -> end of (0.1, 0.5]; p90: rank 7.2 -> 0.5 + 0.5 * 3.2/4 = 0.9 s
    assert f2["ttft_p50_ms"] == pytest.approx(500.0)
    assert f2["ttft_p90_ms"] == pytest.approx(900.0)
    assert f2["ttft_p95_ms"] == pytest.approx(950.0)
    assert f2["ttft_p99_ms"] == pytest.approx(990.0)
    assert f2["ttft_mean_ms"] == pytest.approx(525.0)
    # cross-check with the shared quantile function
    d = histogram.delta(
        histogram.Histogram([(0.1, 2), (0.5, 5), (1.0, 6), (float("inf"), 6)], 6, 1.8),
        histogram.Histogram([(0.1, 2), (0.5, 9), (1.0, 14), (float("inf"), 14)], 14, 6.0),
    )
    assert histogram.quantile(0.95, d) * 1000 == pytest.approx(f2["ttft_p95_ms"])
    # no observations of itl at all: no field (never 0)
    assert not [k for k in f2 if k.startswith(("itl_", "queue_"))]


def test_interval_without_observations_gives_no_percentiles():
    with fake_vllm([PAGE1, PAGE1]) as fake:
        _, second = scrape_all(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S])
    f2 = by_model(second)[M].fields
    assert f2["prompt_tokens_per_s"] == 0.0
    assert not [k for k in f2 if "_p" in k and k.endswith("_ms")]
    assert not [k for k in f2 if k.endswith("_mean_ms")]


def test_counter_reset_counts_from_zero_and_new_buckets_give_no_percentile(caplog):
    """A restarted server: counters count from 0 (Prometheus `increase`); changed buckets: no percentile once."""
    restarted = vllm_page(
        {M: Snap(prompt=30, generation=50, finished={"stop": 1}, hists={"ttft": ([0.2, 2.0], [1, 1, 1], 0.15)})}
    )
    later = vllm_page(
        {M: Snap(prompt=130, generation=250, finished={"stop": 3}, hists={"ttft": ([0.2, 2.0], [2, 3, 3], 1.15)})}
    )
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    with fake_vllm([PAGE1, PAGE2, restarted, later]) as fake:
        out = scrape_all(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S, 20 * S, 30 * S])
    reset = by_model(out[2])[M].fields
    assert reset["up"] == 1 and reset["prompt_tokens_total"] == 30
    assert reset["prompt_tokens_per_s"] == pytest.approx(3.0) and reset["generation_tokens_per_s"] == pytest.approx(5.0)
    assert reset["requests_per_s"] == pytest.approx(0.1)
    assert not [k for k in reset if k.startswith("ttft_")]  # other bucket bounds: nothing to difference
    lines = [r.getMessage() for r in caplog.records if "counted from 0" in r.getMessage()]
    assert len(lines) == 1 and "prompt_tokens_total" in lines[0] and "ttft" in lines[0]
    after = by_model(out[3])[M].fields
    assert after["prompt_tokens_per_s"] == pytest.approx(10.0)
    assert after["generation_tokens_per_s"] == pytest.approx(20.0)
    # ttft deltas [1, 2, 2]: p50 rank 1 -> 0.2 s; mean 1.0/2 s
    assert after["ttft_p50_ms"] == pytest.approx(200.0)
    assert after["ttft_mean_ms"] == pytest.approx(500.0)


def engines_page(prompt: tuple[float, float], ttft: tuple[list[float], list[float]]) -> str:
    """Two vLLM engines with their own numbers (one can restart while the other keeps going)."""
    lines = ["# TYPE vllm:prompt_tokens counter"]
    lines += [f'vllm:prompt_tokens_total{{engine="{e}",model_name="{M}"}} {v!r}' for e, v in enumerate(prompt)]
    lines.append("# TYPE vllm:time_to_first_token_seconds histogram")
    for e, cum in enumerate(ttft):
        labels = f'engine="{e}",model_name="{M}"'
        for le, c in zip(["0.1", "1.0", "+Inf"], cum):
            lines.append(f'vllm:time_to_first_token_seconds_bucket{{{labels},le="{le}"}} {c!r}')
        lines.append(f"vllm:time_to_first_token_seconds_count{{{labels}}} {cum[-1]!r}")
        lines.append(f"vllm:time_to_first_token_seconds_sum{{{labels}}} {cum[-1] * 0.5!r}")
    return "\n".join(lines) + "\n"


def test_one_engine_restarting_while_another_grows_gives_prometheus_sum_of_increase():
    """engine0 1000 -> 10 (restart), engine1 1000 -> 3000: sum(increase()) = 10 + 2000 = 2010, not 3010 - 2000."""
    before = engines_page((1000.0, 1000.0), ([100.0, 200.0, 200.0], [100.0, 200.0, 200.0]))
    after = engines_page((10.0, 3000.0), ([4.0, 4.0, 4.0], [100.0, 300.0, 300.0]))
    with fake_vllm([before, after]) as fake:
        first, second = scrape_all(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S])
    f = by_model(second)[M].fields
    assert f["prompt_tokens_total"] == 3010  # the total is the sum of what the page says now
    assert f["prompt_tokens_per_s"] == pytest.approx(201.0)
    # ttft: engine0 restarted with 4 fast requests (counted from 0), engine1 100 slow ones -> 104 observations,
    # 4 in (0, 0.1], 100 in (0.1, 1]: p50 rank 52 -> 0.1 + 0.9 * 48/100
    assert f["ttft_p50_ms"] == pytest.approx((0.1 + 0.9 * 48 / 100) * 1000)
    assert f["ttft_mean_ms"] == pytest.approx((2.0 + 50.0) / 104 * 1000)


def test_vllm_fixtures_read_through_the_table():
    for name, kv in (
        ("vllm", "kv_cache_usage_ratio"),
        ("vllm_v0", "kv_cache_usage_ratio"),
        ("vllm_dp2", "kv_cache_usage_ratio"),
    ):
        page = parse(open(f"tests/fixtures/prometheus/{name}.txt").read())
        readings = read_page(TABLE, page)
        assert readings and all(r.model for r in readings)
        r = readings[0]
        assert kv in r.gauges and 0 <= r.gauges[kv] <= 1
        assert {"ttft", "itl", "e2e"} <= set(r.histograms)
        assert r.counters["requests_total"] == sum(
            v for k, v in r.counters.items() if k.startswith("requests_finished_")
        )


def test_old_vllm_names_map_to_the_same_fields():
    pages = [
        vllm_page({M: snap(0, 0, 0, 0, [0, 0, 0, 0], 0)}, old=True),
        vllm_page({M: Snap(kv=0.5, hists={"itl": (BOUNDS, [1, 1, 2, 2], 0.6)})}, old=True),
    ]
    pages[0] = vllm_page({M: Snap(hists={"itl": (BOUNDS, [0, 0, 0, 0], 0.0)})}, old=True)
    with fake_vllm(pages) as fake:
        _, second = scrape_all(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S])
    f = by_model(second)[M].fields
    assert f["kv_cache_usage_ratio"] == 0.5
    # two itl observations: one in (0, 0.1], one in (0.5, 1.0]; p50 rank 1 -> 0.1 s
    assert f["itl_p50_ms"] == pytest.approx(100.0) and f["itl_mean_ms"] == pytest.approx(300.0)


def test_vllm_error_finish_reason_gives_errors_and_ratio():
    p1 = vllm_page({M: Snap(finished={"stop": 10, "length": 0, "abort": 0, "error": 0})})
    p2 = vllm_page({M: Snap(finished={"stop": 16, "length": 1, "abort": 0, "error": 3})})
    with fake_vllm([p1, p2]) as fake:
        first, second = scrape_all(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S])
    assert by_model(first)[M].fields["request_errors_total"] == 0
    f = by_model(second)[M].fields
    assert f["requests_finished_error_total"] == 3 and f["error_ratio"] == pytest.approx(3 / 10)
    # a page without the error series (older vLLM) says nothing about errors
    [old] = read_page(TABLE, parse(PAGE1))
    assert "request_errors_total" not in old.counters and old.counters["requests_total"] == 12


def test_an_adapter_bug_or_surprise_is_up0_and_one_line(caplog):
    class Surprised:
        server_type = "vllm"

        async def read(self, fetch):
            raise KeyError("data")

    caplog.set_level(logging.INFO, logger="telegraf_llm_input")

    async def run():
        source = ServerSource(TargetConfig(url="http://127.0.0.1:9"), Surprised(), HttpPool().retain())
        out = [list(await source.gather(GatherContext(t, 5.0))) for t in (0, S)]
        await source.close()
        return out

    out = asyncio.run(run())
    assert [m.fields["up"] for batch in out for m in batch] == [0, 0]
    lines = [r.getMessage() for r in caplog.records if "unreadable answer" in r.getMessage()]
    assert len(lines) == 1 and "KeyError" in lines[0]


@pytest.mark.parametrize("kind", ["vllm", "auto"])
def test_a_target_down_before_its_models_were_known_reads_up_once_they_are(kind):
    """The first up=0 has no model (and, for `auto`, server_type=unknown); on recovery that series gets up=1 once,
    so `min by (host, target) (up)` and InfluxQL `last(up)` do not show a healthy target down until it expires."""
    from tests.fakes.server import FakeServer, Reply

    pages = [Reply("oops", status=500)] + [Reply(PAGE1)] * 3
    with FakeServer({"/metrics": pages, "/version": Reply({"version": "0.11.0"})}) as fake:
        down, up, later = scrape_all(TargetConfig(url=fake.url, type=kind, retries=0), [100 * S, 110 * S, 120 * S])
    (d,) = down
    assert d.fields["up"] == 0 and "model" not in d.tags
    assert d.tags["server_type"] == ("vllm" if kind == "vllm" else "unknown")
    ups = {tuple(sorted(m.tags.items())): m.fields["up"] for m in up if m.measurement == "llm_server"}
    assert ups[tuple(sorted(d.tags.items()))] == 1  # the series that said down now says up
    assert by_model(up)[M].fields["up"] == 1
    assert [m.tags.get("model") for m in later if m.measurement == "llm_server"] == [M]  # only once


def test_a_series_new_between_two_scrapes_counts_from_zero_in_every_field():
    """One rule (docs/servers.md): the first `error` finish creates its series between two scrapes; it counts from 0
    in requests_per_s, in request_errors_total's increase and so in error_ratio alike."""
    p1 = vllm_page({M: Snap(finished={"stop": 10})})
    p2 = vllm_page({M: Snap(finished={"stop": 16, "error": 2})})
    with fake_vllm([p1, p2]) as fake:
        first, second = scrape_all(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S])
    assert "request_errors_total" not in by_model(first)[M].fields
    f = by_model(second)[M].fields
    assert f["requests_per_s"] == pytest.approx(8 / 10)
    assert f["error_ratio"] == pytest.approx(2 / 8)


def test_a_counter_missing_from_one_answer_is_compared_with_its_last_value_over_the_whole_interval():
    from telegraf_llm_input.servers.base import ModelReading
    from telegraf_llm_input.sources.target import Baseline, derive

    def reading(**counters):
        return ModelReading(None, counters=dict(counters), rated=None)

    b0 = Baseline.of(reading(a_total=100.0, b_total=10.0), 0)
    b1 = Baseline.of(reading(b_total=20.0), 10 * S, b0)  # a_total missing from this answer
    f = derive(b1, reading(a_total=160.0, b_total=30.0), 20 * S).fields
    assert f["a_per_s"] == pytest.approx(60 / 20)  # not 160 counted from 0, nor 60 over 10 s
    assert f["b_per_s"] == pytest.approx(10 / 10)
