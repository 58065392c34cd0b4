"""The proxy's page is valid exposition format: promtool and prometheus_client read it as we mean it."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from telegraf_llm_input.proxy.registry import MAX_SERIES, Counter, Histogram, Registry


def page() -> bytes:
    r = Registry()
    c = r.add(Counter("x_requests_total", "Requests.\nBy model.", ("model", "outcome")))
    h = r.add(Histogram("x_latency_seconds", "Latency.", ("model",), (0.1, 1.0)))
    c.inc(('we"ird\\model\n', "ok"))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(("m",), v)
    return r.render()


def test_prometheus_client_reads_it_as_meant():
    families = {f.name: f for f in text_string_to_metric_families(page().decode())}
    (sample,) = families["x_requests"].samples
    assert sample.labels == {"model": 'we"ird\\model\n', "outcome": "ok"} and sample.value == 1.0
    buckets = {s.labels["le"]: s.value for s in families["x_latency_seconds"].samples if s.name.endswith("_bucket")}
    assert buckets == {"0.1": 2.0, "1.0": 3.0, "+Inf": 4.0}  # le is inclusive, counts cumulative
    count = [s.value for s in families["x_latency_seconds"].samples if s.name.endswith("_count")]
    assert count == [4.0]


def test_promtool_check_metrics_is_clean():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    r = subprocess.run([promtool, "check", "metrics"], input=page(), capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


def test_label_sets_are_capped_per_family():
    c = Counter("x_total", "x", ("model",))
    for i in range(MAX_SERIES + 50):
        c.inc((f"m{i}",))
    assert len(c.series) == MAX_SERIES + 1 and c.value(("other",)) == 50
