"""The schema's naming rules: what the Prometheus exporter, dashboards and alert rules all use."""

import pytest

from telegraf_llm_input.schema import ALL, lookup, prometheus_name, prometheus_unit


@pytest.mark.parametrize(
    "field, name, factor",
    [
        ("ttft_p95_ms", "ttft_p95_seconds", 1e-3),
        ("requests_per_s", "requests_per_second", 1.0),
        ("pcie_tx_kib_s", "pcie_tx_bytes_per_second", 1024.0),
        ("memory_used_mib", "memory_used_bytes", 1024.0**2),
        ("uptime_s", "uptime_seconds", 1.0),
        ("rss_bytes", "rss_bytes", 1.0),
        ("kv_cache_usage_ratio", "kv_cache_usage_ratio", 1.0),
    ],
)
def test_prometheus_names_use_base_units(field, name, factor):
    assert prometheus_unit(field) == (name, pytest.approx(factor))


def test_counters_end_in_total_and_names_are_unique():
    assert prometheus_name("llm_agent", "gathers") == "llm_agent_gathers_total"
    assert prometheus_name("llm_server", "generation_tokens_total") == "llm_server_generation_tokens_total"
    assert prometheus_name("llm_server", "ttft_p95_ms") == "llm_server_ttft_p95_seconds"
    names = {}
    for m in ALL:
        for f in m.fields:
            if "*" in f.name:
                continue
            name = prometheus_name(m.name, f.name)
            assert names.setdefault(name, (m.name, f.name)) == (m.name, f.name), f"{name} collides"
            # promtool rejects abbreviated units as name parts
            assert not {"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb"} & set(name.split("_")), name


def test_lookup_ignores_the_bare_catch_all():
    assert lookup("llm_server", "ttft_p95_ms") is not None
    assert lookup("llm_server", "no_such_field_anywhere") is None


def test_measurement_names_are_unique_and_fields_documented():
    names = [m.name for m in ALL]
    assert len(names) == len(set(names))
    for m in ALL:
        fields = [f.name for f in m.fields]
        assert len(fields) == len(set(fields)), m.name
        for f in m.fields:
            assert f.unit is not None and f.meaning, (m.name, f.name)
