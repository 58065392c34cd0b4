"""Pages read through a PromTable: partial pages are the server answering, duplicate series count once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from telegraf_llm_input.config.targets import TargetConfig
from tests.fakes.server import FakeServer, Reply
from tests.servers.test_servers import scrape
from tests.sources.test_gpu import records  # noqa: F401  (fixture)

S = 1_000_000_000
M = "Qwen/Qwen2.5-7B-Instruct"


PARTIAL = (
    "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
    "# TYPE vllm:cache_config_info gauge\n"
    'vllm:cache_config_info{block_size="16",gpu_memory_utilization="0.9"} 1.0\n'
    "# TYPE python_gc_objects_collected_total counter\n"
    'python_gc_objects_collected_total{generation="0"} 123.0\n'
)


@pytest.mark.parametrize("kind", ["vllm", "auto"])
def test_a_vllm_page_without_our_names_is_up(kind, records):  # noqa: F811
    """A build exposing only some metrics (here: none we map) still answered: up=1, and one info line."""
    with FakeServer({"/metrics": Reply(PARTIAL)}) as fake:
        out = scrape(TargetConfig(url=fake.url, type=kind), [0, 10 * S, 20 * S])
    for metrics in out:
        [server] = [m for m in metrics if m.measurement == "llm_server"]
        assert server.fields["up"] == 1 and server.tags["server_type"] == "vllm"
    missing = [r for r in records if "without the metrics for" in r.getMessage()]
    assert len(missing) == 1 and missing[0].levelno == logging.INFO
    assert "prompt_tokens_total" in missing[0].getMessage() and "ttft" in missing[0].getMessage()


def test_a_page_of_another_server_is_still_down():
    sglang = '# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs{model_name="m"} 1.0\n'
    with FakeServer({"/metrics": Reply(sglang)}) as fake:
        [metrics] = scrape(TargetConfig(url=fake.url, type="vllm"), [0])
    [server] = [m for m in metrics if m.measurement == "llm_server"]
    assert server.fields["up"] == 0


def page(first: float, second: float) -> str:
    return (
        "# TYPE vllm:prompt_tokens counter\n"
        f'vllm:prompt_tokens_total{{engine="0",model_name="{M}"}} {first!r}\n'
        f'vllm:prompt_tokens_total{{engine="0",model_name="{M}"}} {second!r}\n'
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{engine="0",model_name="{M}"}} 2.0\n'
        f'vllm:num_requests_running{{engine="0",model_name="{M}"}} 7.0\n'
    )


def test_duplicate_series_keep_the_first_and_warn_once(records):  # noqa: F811
    with FakeServer({"/metrics": [Reply(page(100.0, 5.0)), Reply(page(160.0, 9.0))]}) as fake:
        first, second = scrape(TargetConfig(url=fake.url, type="vllm"), [0, 10 * S])
    [f1] = [m.fields for m in first if m.measurement == "llm_server"]
    assert f1["prompt_tokens_total"] == 100.0 and f1["requests_running"] == 2.0  # the first, never the sum
    [f2] = [m.fields for m in second if m.measurement == "llm_server"]
    assert f2["prompt_tokens_per_s"] == pytest.approx(6.0)
    warnings = [r for r in records if "twice" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING and "2 series" in warnings[0].getMessage()


def test_duplicate_series_on_a_prometheus_target_keep_the_first():
    text = "# TYPE app_inflight gauge\napp_inflight 3\napp_inflight 8\n"
    with FakeServer({"/metrics": Reply(text)}) as fake:
        [metrics] = scrape(TargetConfig(url=fake.url, type="prometheus"), [0])
    [app] = [m for m in metrics if "app_inflight" in m.fields]
    assert app.fields["app_inflight"] == 3.0


def test_the_missing_line_names_no_field_that_the_page_gives_from_counters():
    """A V1 page (recorded, tests/fixtures/prometheus/vllm.txt) has no V0 hit-rate gauge, but its prefix-cache
    counters give `prefix_cache_hit_ratio`: the info line must not say the page lacks it."""
    from telegraf_llm_input.promtext import parse
    from telegraf_llm_input.servers.vllm import TABLE

    text = (Path(__file__).resolve().parent.parent / "fixtures" / "prometheus" / "vllm.txt").read_text()
    assert "vllm:prefix_cache_queries_total" in text and "vllm:gpu_prefix_cache_hit_rate" not in text
    missing = TABLE.missing(parse(text))
    assert "prefix_cache_hit_ratio" not in missing
    assert "prefix_cache_queries_total" not in missing
    # without the spec-decode counters the acceptance ratio is missing indeed
    if "vllm:spec_decode_num_draft_tokens_total" not in text:
        assert "spec_decode_acceptance_ratio" in missing
