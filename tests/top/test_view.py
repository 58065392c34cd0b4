"""Gather metrics -> the snapshot `top` draws: schema fields to typed views, plus what outlives one gather."""

from __future__ import annotations

import pytest

from telegraf_llm_input.metric import Metric
from telegraf_llm_input.schema.server import SERVER
from telegraf_llm_input.top.view import TopModel, schema_field

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def server(name: str, t: int, **fields) -> Metric:
    return Metric(
        "llm_server", {"target": name, "server_type": "vllm", "model": "m", "host": "box"}, {"up": 1, **fields}, t
    )


def probe(name: str, t: int, **fields) -> Metric:
    return Metric("llm_probe", {"target": name, "server_type": "vllm", "model": "m"}, {"success": 1, **fields}, t)


def test_a_field_missing_from_the_schema_is_an_error_at_import():
    assert schema_field(SERVER, "generation_tokens_per_s") == "generation_tokens_per_s"
    with pytest.raises(LookupError):
        schema_field(SERVER, "generation_tokens_per_sec")


def test_server_fields_land_in_the_view():
    snap = TopModel(2.0).update(
        [
            server(
                "a",
                T0,
                requests_running=3,
                generation_tokens_per_s=41.5,
                ttft_p95_ms=300.0,
                kv_cache_usage_ratio=0.5,
                error_ratio=0.01,
            )
        ]
    )
    [t] = snap.targets
    assert (t.target, t.model, t.server_type, t.host, t.up) == ("a", "m", "vllm", "box", True)
    assert (t.running, t.gen_tps, t.ttft_p95_ms, t.kv_ratio, t.error_ratio) == (3.0, 41.5, 300.0, 0.5, 0.01)
    assert t.prompt_tps is None and t.tpot_p50_ms is None  # absent stays absent, never 0
    assert snap.hostname == "box"


def test_last_probe_stays_until_a_newer_one():
    model = TopModel(1.0)
    model.update([server("a", T0), probe("a", T0 - S // 2, ttft_ms=120.0, tokens_per_s=40.0)])
    later = model.update([server("a", T0 + 3 * S)]).targets[0].probe
    assert later is not None and later.ttft_ms == 120.0 and later.age_s == pytest.approx(3.5)
    failed = Metric("llm_probe", {"target": "a", "error": "timeout"}, {"success": 0}, T0 + 3 * S)
    newest = model.update([server("a", T0 + 4 * S), failed]).targets[0].probe
    assert newest is not None and not newest.success and newest.error == "timeout"


def test_a_target_without_a_point_stays_on_screen_down_with_its_reason():
    model = TopModel(1.0, expected={"a": "vllm", "never": "llamacpp"})
    model.update([server("a", T0, generation_tokens_per_s=10.0)])
    snap = model.update([], silent={"a": "source server:a: no result within 0.8s; results discarded"})
    a, never = snap.targets
    assert (a.target, a.model, a.up) == ("a", "m", False)  # the model it had is kept
    assert a.down_reason == "source server:a: no result within 0.8s; results discarded"
    assert a.gen_history == (10.0, None)  # the gap shows in the sparkline
    assert (never.target, never.server_type, never.up) == ("never", "llamacpp", False)
    assert never.down_reason == "no result this gather"


def test_down_reason_only_for_down_targets():
    snap = TopModel(1.0).update(
        [server("a", T0, up=0), server("b", T0)], down_reasons={"a": "connection refused", "b": "stale"}
    )
    assert [t.down_reason for t in snap.targets] == ["connection refused", None]


def test_history_covers_the_last_minutes_only():
    model = TopModel(60.0, history_s=300.0)  # five samples
    for i in range(8):
        snap = model.update([server("a", T0 + i * 60 * S, generation_tokens_per_s=float(i))])
    assert snap.targets[0].gen_history == (3.0, 4.0, 5.0, 6.0, 7.0)
    assert snap.history_s == 300.0


def test_gpu_and_host_views():
    gpu = Metric(
        "llm_gpu",
        {"index": "0", "name": "NVIDIA H100", "vendor": "nvidia"},
        {
            "utilization_gpu": 97,
            "memory_used_mib": 1024.0,
            "memory_total_mib": 81559.0,
            "power_draw_w": 410.5,
            "temperature_gpu": 61,
            "gpu_lost": 0,
        },
        T0,
    )
    host = Metric("llm_host", {}, {"cpu_percent": 12.5, "swap_in_bytes_per_s": 4096.0}, T0)
    snap = TopModel(1.0).update([gpu, host])
    [g] = snap.gpus
    assert (g.index, g.name, g.utilization, g.memory_total_mib, g.power_w, g.temperature, g.lost) == (
        "0",
        "NVIDIA H100",
        97.0,
        81559.0,
        410.5,
        61.0,
        False,
    )
    assert snap.host is not None and snap.host.cpu_percent == 12.5 and snap.host.swap_in_bytes_per_s == 4096.0


def test_llamacpps_latency_from_its_log_lands_in_the_view():
    """llama.cpp has no latency histograms: its log's e2e and time per output token are the row's (tpot was left
    out though the log point had it)."""
    scrape = Metric("llm_server", {"target": "l", "server_type": "llamacpp", "model": "m"}, {"up": 1}, T0)
    log = Metric(
        "llm_server",
        {"target": "l", "server_type": "llamacpp"},
        {"requests_per_s": 2.0, "e2e_p50_ms": 80.0, "e2e_p95_ms": 200.0, "tpot_p50_ms": 12.5, "tpot_p95_ms": 30.0},
        T0,
    )
    [t] = TopModel(2.0).update([scrape, log]).targets
    assert (t.requests_per_s, t.e2e_p50_ms, t.e2e_p95_ms) == (2.0, 80.0, 200.0)
    assert (t.tpot_p50_ms, t.tpot_p95_ms) == (12.5, 30.0)
