"""Request lengths, prefix-cache reuse, speculative decoding, LoRA and `server_version` (issue 18).

Scraped through the public path (a fake server speaking each project's page, ServerSource), and the vLLM
numbers checked against the real Prometheus engine (promtool) evaluating `histogram_quantile` and counter
deltas on the same two snapshots.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import HttpPool
from telegraf_llm_input.promtext import parse
from telegraf_llm_input.servers import make_adapter, promadapter, promtable, sglang
from telegraf_llm_input.sources.base import GatherContext
from telegraf_llm_input.sources.target import Baseline, ServerSource, derive
from tests.fakes.llm import (
    LOADING,
    Snap,
    fake_llamacpp,
    fake_ollama,
    fake_vllm,
    llamacpp_loading,
    llamacpp_metrics,
    vllm_page,
)
from tests.fakes.llm_more import fake_sglang, fake_tgi, sglang_page, tgi_page
from tests.fakes.server import Reply
from tests.support.procs import find_binary

S = 1_000_000_000
M = "Qwen/Qwen2.5-7B-Instruct"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "prometheus"
TOK = [100.0, 200.0, 500.0, 1000.0, 2000.0]


def scrape(target: TargetConfig, times: list[int], between=None) -> list[list]:
    """Every gather's metrics; `between(i)` runs before gather i (to change what the fake answers)."""

    async def run():
        source = ServerSource(target, make_adapter(target), HttpPool().retain())
        out = []
        for i, t in enumerate(times):
            if between:
                between(i)
            out.append(list(await source.gather(GatherContext(t, 5.0))))
        await source.close()
        return out

    return asyncio.run(run())


def server_point(metrics, model=None):
    points = [m for m in metrics if m.measurement == "llm_server" and (model is None or m.tags.get("model") == model)]
    assert len(points) == 1, points
    return points[0]


def snap(k: int, prompt_cum, gen_cum, prompt_sum, gen_sum, queries, hits, spec, lora=None) -> Snap:
    return Snap(
        running=2,
        prompt=prompt_sum,
        generation=gen_sum,
        finished={"stop": prompt_cum[-1]},
        hists={
            "request_prompt_tokens": (TOK, prompt_cum, prompt_sum),
            "request_generation_tokens": (TOK, gen_cum, gen_sum),
            "request_max_tokens": (TOK, [0, 0, 0, k, k, k], 1000.0 * k),
        },
        prefix_queries=queries,
        prefix_hits=hits,
        spec=spec,
        lora=lora,
    )


# two engines, each reporting half: per-series increases, then summed
V1 = vllm_page({M: snap(4, [2, 4, 6, 8, 8, 8], [4, 6, 8, 8, 8, 8], 2400, 800, 10000, 4000, (300, 900, 420))}, engines=2)
V2 = vllm_page(
    {
        M: snap(
            10,
            [2, 8, 14, 20, 22, 22],
            [6, 12, 18, 22, 22, 22],
            9400,
            3600,
            18000,
            10400,
            (700, 2100, 1060),
            (["sql-lora", "chat-lora"], ["tool-lora"], 4),
        )
    },
    engines=2,
)


def test_vllm_request_lengths_prefix_cache_and_spec_decode():
    with fake_vllm([V1, V2]) as fake:
        first, second = scrape(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S])
    f1 = server_point(first, M).fields
    assert f1["prefix_cache_queries_total"] == 10000 and f1["prefix_cache_hits_total"] == 4000
    assert f1["spec_decode_drafts_total"] == 300 and f1["spec_decode_accepted_tokens_total"] == 420
    assert not [
        k for k in f1 if k.startswith("request_") or k.endswith(("_ratio", "_length")) and "cache_usage" not in k
    ]
    f = server_point(second, M).fields
    # prompt-length deltas per bucket [0, 4, 8, 12, 14, 14]: p50 rank 7 -> 200 + 300 * 3/4
    assert f["request_prompt_tokens_p50"] == pytest.approx(425.0)
    assert f["request_prompt_tokens_p95"] == pytest.approx(1000 + 1000 * (13.3 - 12) / 2)
    assert f["request_prompt_tokens_mean"] == pytest.approx(7000 / 14)
    assert f["request_generation_tokens_mean"] == pytest.approx(2800 / 14)
    assert f["request_max_tokens_p50"] == pytest.approx(500 + 500 * 3 / 6) and f["request_max_tokens_mean"] == 1000.0
    assert "request_prompt_tokens_p90" not in f and "request_prompt_tokens_p50_ms" not in f
    assert f["prefix_cache_hit_ratio"] == pytest.approx(6400 / 8000)
    assert f["spec_decode_acceptance_ratio"] == pytest.approx(640 / 1200)
    assert f["spec_decode_mean_accept_length"] == pytest.approx(1 + 640 / 400)
    # LoRA: the newest label set (an older one stays on the page); the server's, so on its model's point
    assert (f["lora_adapters_running"], f["lora_adapters_waiting"], f["lora_adapters_max"]) == (2, 1, 4)
    assert "lora_adapters_running" not in f1
    assert server_point(second, M).tags["server_version"] == "0.11.0"


def _promtool_values(pages: tuple[str, str], exprs: dict[str, str]) -> str:
    """A promtool unit test: the two snapshots one minute apart, each expression expected at our value."""
    snapshots = [{(s.name, tuple(sorted(s.labels.items()))): s.value for s in parse(p).samples} for p in pages]
    series = []
    for (name, labels), before in snapshots[0].items():
        after = snapshots[1].get((name, labels))
        if after is None or not name.startswith(("vllm:request_", "vllm:prefix_", "vllm:spec_")):
            continue
        label_text = ",".join(f'{k}="{v}"' for k, v in labels)
        series.append(f"      - series: '{name}{{{label_text}}}'\n        values: '{before!r} {after!r}'\n")
    tests = "".join(
        f"      - expr: '{expr}'\n        eval_time: 1m\n        exp_samples:\n"
        f"          - labels: '{{}}'\n            value: {value!r}\n"
        for expr, value in exprs.items()
    )
    return (
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n"
        + "".join(series)
        + "    promql_expr_test:\n"
        + tests
    )


def delta(name: str) -> str:
    return f"sum({name} - {name} offset 1m)"


def quantile(q: float, name: str) -> str:
    return f"histogram_quantile({q}, sum by (le) ({name}_bucket - {name}_bucket offset 1m))"


def test_vllm_fields_equal_prometheus_on_the_same_two_snapshots(tmp_path):
    promtool = find_binary("promtool")
    if promtool is None:
        pytest.skip("promtool not installed: run `apt-get install prometheus` (scripts/test.sh does)")
    with fake_vllm([V1, V2]) as fake:
        _, second = scrape(TargetConfig(url=fake.url, type="vllm"), [0, 60 * S])
    f = server_point(second, M).fields
    exprs: dict[str, float] = {}
    for ours, name in (
        ("request_prompt_tokens", "vllm:request_prompt_tokens"),
        ("request_generation_tokens", "vllm:request_generation_tokens"),
        ("request_max_tokens", "vllm:request_params_max_tokens"),
    ):
        exprs[quantile(0.5, name)] = f[f"{ours}_p50"]
        exprs[quantile(0.95, name)] = f[f"{ours}_p95"]
        exprs[f"{delta(name + '_sum')} / {delta(name + '_count')}"] = f[f"{ours}_mean"]
    exprs[f"{delta('vllm:prefix_cache_hits_total')} / {delta('vllm:prefix_cache_queries_total')}"] = f[
        "prefix_cache_hit_ratio"
    ]
    exprs[
        f"{delta('vllm:spec_decode_num_accepted_tokens_total')} / {delta('vllm:spec_decode_num_draft_tokens_total')}"
    ] = f["spec_decode_acceptance_ratio"]
    exprs[
        f"1 + {delta('vllm:spec_decode_num_accepted_tokens_total')} / {delta('vllm:spec_decode_num_drafts_total')}"
    ] = f["spec_decode_mean_accept_length"]
    exprs["sum(vllm:prefix_cache_hits_total)"] = f["prefix_cache_hits_total"]
    exprs["sum(vllm:spec_decode_num_draft_tokens_total)"] = f["spec_decode_draft_tokens_total"]
    (tmp_path / "rules.yml").write_text("groups: []\n")
    (tmp_path / "test.yml").write_text(_promtool_values((V1, V2), exprs))
    done = subprocess.run(
        [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # the check can fail: a wrong value is caught
    wrong = {e: v * 1.01 + 1 for e, v in list(exprs.items())[:1]}
    (tmp_path / "test.yml").write_text(_promtool_values((V1, V2), wrong))
    assert (
        subprocess.run(
            [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, timeout=120
        ).returncode
        != 0
    )


def more_generations(page: str, tokens: list[int]) -> str:
    """The same vLLM page after more requests finished with these generation lengths."""

    def bucket(m: re.Match) -> str:
        le = float(m.group(2))
        return f"{m.group(1)}{float(m.group(3)) + sum(1 for t in tokens if t <= le)!r}"

    page = re.sub(r'(vllm:request_generation_tokens_bucket\{engine="0",le="([^"]+)",[^}]*\} )(\S+)', bucket, page)
    page = re.sub(
        r"(vllm:request_generation_tokens_count\{[^}]*\} )(\S+)",
        lambda m: f"{m.group(1)}{float(m.group(2)) + len(tokens)!r}",
        page,
    )
    return re.sub(
        r"(vllm:request_generation_tokens_sum\{[^}]*\} )(\S+)",
        lambda m: f"{m.group(1)}{float(m.group(2)) + sum(tokens)!r}",
        page,
    )


def test_vllm_010_page_with_only_the_generation_histogram_is_up_with_lengths():
    page = (FIXTURES / "vllm_0.10_generation_only.txt").read_text()
    later = more_generations(page, [420, 480])
    assert later != page
    with fake_vllm([page, later]) as fake:
        first, second = scrape(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S])
    p1, p2 = server_point(first), server_point(second)
    assert p1.fields["up"] == 1 and p1.tags["model"] == "zai-org/GLM-4.5"
    f = p2.fields
    assert f["up"] == 1
    # two new observations in (200, 500]: p50 rank 1 -> 200 + 300 * 1/2; p95 rank 1.9
    assert f["request_generation_tokens_p50"] == pytest.approx(350.0)
    assert f["request_generation_tokens_p95"] == pytest.approx(485.0)
    assert f["request_generation_tokens_mean"] == pytest.approx(450.0)
    assert not [k for k in f if k.startswith("request_prompt_tokens")]


def test_vllm_v0_gauges_and_counters():
    """V0: the block hit-rate gauge (no prefix counters); spec-decode counters without drafts, and its gauge."""

    def page(hits, draft, accepted):
        return vllm_page(
            {M: Snap(prompt=10, prefix_queries=1000, prefix_hits=hits, spec=(0, draft, accepted))}, old=True
        )

    with fake_vllm([page(250, 100, 70), page(400, 300, 170)]) as fake:
        first, second = scrape(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S])
    f1, f2 = server_point(first).fields, server_point(second).fields
    assert f1["prefix_cache_hit_ratio"] == pytest.approx(0.25) and f2["prefix_cache_hit_ratio"] == pytest.approx(0.4)
    assert "prefix_cache_queries_total" not in f2
    assert f1["spec_decode_acceptance_ratio"] == pytest.approx(0.7)  # the gauge, before there is an interval
    assert f2["spec_decode_acceptance_ratio"] == pytest.approx(100 / 200)  # the counters' interval
    assert "spec_decode_mean_accept_length" not in f2 and "spec_decode_drafts_total" not in f2


def test_sglang_fixture_and_interval_fields():
    fixture = (FIXTURES / "sglang.txt").read_text()
    B = [0.5, 1.0]
    ttft = (B, [0, 0, 0], 0.0)

    def page(prompt, gen, requests, cached, lengths=None):
        return sglang_page(
            M,
            2,
            1,
            [0.2, 0.4],
            prompt,
            gen,
            requests,
            ttft,
            cached=cached,
            hit_rate=0.9,
            spec=(2.5, 0.6),
            lengths=lengths,
        )

    no_hist = [page(1000, 400, 10, 100), page(3000, 1000, 14, 1100)]
    hists = [
        page(1000, 400, 10, 100, {"prompt": ([500.0, 1000.0], [2, 10, 10], 1000.0)}),
        page(3000, 1000, 14, 1100, {"prompt": ([500.0, 1000.0], [4, 14, 14], 2600.0)}),
    ]
    with fake_sglang([fixture, *no_hist, *hists]) as fake:
        out = scrape(TargetConfig(url=fake.url, type="sglang"), [0, 10 * S, 20 * S, 30 * S, 40 * S])
    f0 = server_point(out[0]).fields
    # the recorded page: the scheduler's gauges (one rank)
    assert f0["prefix_cache_hit_ratio"] == pytest.approx(0.37) and f0["prefix_cache_hits_total"] == 87230
    assert f0["spec_decode_mean_accept_length"] == pytest.approx(2.84)
    assert f0["spec_decode_acceptance_ratio"] == pytest.approx(0.61)
    assert server_point(out[0]).tags["server_version"] == "0.4.9"
    # no length histograms: tokens per finished request from the counters' deltas; cache ratio from cached tokens
    f = server_point(out[2]).fields
    assert f["request_prompt_tokens_mean"] == pytest.approx(2000 / 4)
    assert f["request_generation_tokens_mean"] == pytest.approx(600 / 4)
    assert f["prefix_cache_hit_ratio"] == pytest.approx(1000 / 2000)
    assert not [k for k in f if k.startswith("request_") and k.endswith(("_p50", "_p95"))]
    # with `--collect-tokens-histogram`: the histogram's own numbers (p50 rank 2 -> in (0, 500]: 500 * 2/2)
    f = server_point(out[4]).fields
    assert f["request_prompt_tokens_p50"] == pytest.approx(500.0)
    assert f["request_prompt_tokens_mean"] == pytest.approx(1600 / 4)  # the histogram's, not the counters' 2000 / 4
    assert f["spec_decode_mean_accept_length"] == pytest.approx(2.5)


def test_sglang_fixture_histograms_agree_with_its_counters():
    """The recorded page's length histograms against a zero baseline: their means are the counters' ratio."""
    [reading] = promtable.read_page(sglang.TABLE, parse((FIXTURES / "sglang.txt").read_text()))
    f = derive(Baseline.zero(reading, 0), reading, 10 * S).fields
    assert f["request_prompt_tokens_mean"] == pytest.approx(291117 / 240)
    assert f["request_generation_tokens_mean"] == pytest.approx(140855 / 240)
    assert 700 < f["request_prompt_tokens_p50"] <= 1000 and 300 < f["request_generation_tokens_p50"] <= 500
    assert f["prefix_cache_hit_ratio"] == pytest.approx(87230 / 291117)


def test_tgi_lengths_and_version_from_info():
    def page(total, input_cum, input_sum, max_sum):
        return tgi_page(
            total,
            {},
            0,
            1,
            input_sum,
            100.0 * total,
            ([0.5, 1.0], [0, total, total], 0.1 * total),
            max_new_sum=max_sum,
            lengths={"tgi_request_input_length": ([100.0, 200.0, 400.0], input_cum, input_sum)},
        )

    with fake_tgi([page(10, [2, 6, 10, 10], 1500, 5120), page(20, [4, 10, 20, 20], 3900, 10240)]) as fake:
        first, second = scrape(TargetConfig(url=fake.url, type="tgi"), [0, 10 * S])
    assert server_point(first).tags["server_version"] == "3.0.1"
    f = server_point(second).fields
    # input deltas [2, 4, 10, 10]: p50 rank 5 -> 200 + 200 * 1/6
    assert f["request_prompt_tokens_p50"] == pytest.approx(200 + 200 / 6)
    assert f["request_prompt_tokens_mean"] == pytest.approx(240.0)
    assert f["request_generation_tokens_mean"] == pytest.approx(100.0)
    assert f["request_max_tokens_mean"] == pytest.approx(512.0)


def test_vllm_version_is_asked_rarely_again_after_an_outage_and_kept_on_down_points():
    page = vllm_page({M: Snap(prompt=1)})
    with fake_vllm(page) as fake:
        fake.script("/version", Reply({"version": "0.10.1"}))

        def between(i):
            if i == 3:
                fake.script("/metrics", Reply("gone", status=503))
            if i == 4:
                fake.script("/metrics", Reply(page))
                fake.script("/version", Reply({"version": "0.11.0"}))

        out = scrape(TargetConfig(url=fake.url, type="vllm", retries=0), [i * 10 * S for i in range(6)], between)
        asks = fake.paths().count("/version")
    # the gather after the outage also closes the series that went down (0.10.1) with up=1: it is no longer named
    closing = [m for m in out[4] if m.tags.get("server_version") == "0.10.1"]
    assert [m.fields for m in closing] == [
        {"up": 1, "busy": 0, "loading": 0, "scrape_ms": closing[0].fields["scrape_ms"]}
    ]
    out[4] = [m for m in out[4] if m not in closing]
    tags = [server_point(o).tags.get("server_version") for o in out]
    ups = [server_point(o).fields["up"] for o in out]
    assert ups == [1, 1, 1, 0, 1, 1]
    # once on first contact, once after the outage; the down point keeps the version that went down
    assert asks == 2 and tags == ["0.10.1", "0.10.1", "0.10.1", "0.10.1", "0.11.0", "0.11.0"]


def test_version_is_asked_again_after_its_period(monkeypatch):
    monkeypatch.setattr(promadapter, "VERSION_EVERY_S", 0.0)
    with fake_vllm(vllm_page({M: Snap(prompt=1)})) as fake:
        scrape(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S, 20 * S])
        assert fake.paths().count("/version") == 3


def test_a_version_endpoint_that_fails_or_lies_leaves_the_tag_absent():
    with fake_vllm(vllm_page({M: Snap(prompt=1)})) as fake:
        fake.script("/version", Reply("not found", status=404))
        [out] = scrape(TargetConfig(url=fake.url, type="vllm"), [0])
        fake.script("/version", Reply({"version": {"nested": 1}}))
        [later] = scrape(TargetConfig(url=fake.url, type="vllm"), [0])
    for metrics in (out, later):
        point = server_point(metrics)
        assert point.fields["up"] == 1 and "server_version" not in point.tags


def test_llamacpp_build_info_and_ollama_version():
    with fake_llamacpp(llamacpp_metrics(10, 20, 0.5, 1.0)) as fake:
        [out] = scrape(TargetConfig(url=fake.url, type="llamacpp"), [0])
    assert server_point(out).tags["server_version"] == "b6000-abc"
    with fake_llamacpp([LOADING]) as fake:
        llamacpp_loading(fake)
        [loading] = scrape(TargetConfig(url=fake.url, type="llamacpp"), [0])
    assert "server_version" not in server_point(loading).tags  # unknown while it loads, never made up
    with fake_ollama([{"name": "qwen2.5:1.5b", "size": 10, "size_vram": 10}]) as fake:
        [out] = scrape(TargetConfig(url=fake.url, type="ollama"), [0])
    assert server_point(out).tags["server_version"] == "0.6.5"
    assert "server_version" not in [m for m in out if m.measurement == "llm_model_loaded"][0].tags
