"""An interval's requests -> the histogram fields' names, exact percentiles (checked against `statistics`)."""

from __future__ import annotations

import random
import statistics

import pytest

from telegraf_llm_input.schema.server import SERVER
from telegraf_llm_input.serverlogs.base import EMBED, GENERATE, ModelLoad, Request
from telegraf_llm_input.serverlogs.interval import Interval


def pct(values: list[float], p: int) -> float:
    """numpy's default (linear) percentile, from the standard library."""
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def test_exact_percentiles_and_rates():
    rng = random.Random(7)
    reqs = [
        Request(
            e2e_ms=rng.uniform(5, 900),
            prefill_ms=rng.uniform(1, 50),
            prompt_tokens=rng.randint(1, 400),
            decode_ms=rng.uniform(10, 800),
            generation_tokens=rng.randint(1, 300),
        )
        for _ in range(333)
    ]
    iv = Interval()
    iv.add(reqs)
    f = iv.apis[GENERATE].fields(10.0)
    assert f["requests_per_s"] == pytest.approx(33.3)
    e2e = [r.e2e_ms for r in reqs]
    for p in (50, 90, 95, 99):
        assert f[f"e2e_p{p}_ms"] == pytest.approx(pct(e2e, p), rel=1e-12)
        assert f[f"prefill_p{p}_ms"] == pytest.approx(pct([r.prefill_ms for r in reqs], p), rel=1e-12)
        assert f[f"tpot_p{p}_ms"] == pytest.approx(pct([r.decode_ms / r.generation_tokens for r in reqs], p), rel=1e-12)
    assert f["e2e_mean_ms"] == pytest.approx(statistics.fmean(e2e))
    gen = [r.generation_tokens for r in reqs]
    assert f["request_generation_tokens_p95"] == pytest.approx(pct(gen, 95))
    assert round(f["request_generation_tokens_mean"] * f["requests_per_s"] * 10.0) == sum(gen)
    assert "error_ratio" not in f  # llama.cpp's lines have no status
    for name in f:
        assert SERVER.field(name) is not None, name


def test_statuses_and_api_classes_apart():
    iv = Interval()
    iv.add(
        [Request(status=s, e2e_ms=10.0) for s in (200, 200, 500, 503, 404, 400, 200, 200)]
        + [Request(api=EMBED, status=200, e2e_ms=1.0), ModelLoad(2.5), ModelLoad(4.0)]
    )
    gen = iv.apis[GENERATE].fields(2.0)
    assert gen["requests_per_s"] == 4.0
    assert gen["error_ratio"] == 2 / 8 and gen["client_error_ratio"] == 2 / 8
    emb = iv.apis[EMBED].fields(2.0)
    assert emb["requests_per_s"] == 0.5 and emb["e2e_p95_ms"] == 1.0 and emb["error_ratio"] == 0.0
    assert iv.load_fields(2.0) == {"model_loads_per_s": 1.0, "model_load_seconds": 4.0}
    for name in [*gen, *iv.load_fields(2.0)]:
        assert SERVER.field(name) is not None, name


def test_nothing_measured_nothing_but_the_rate():
    iv = Interval()
    assert iv.load_fields(5.0) == {"model_loads_per_s": 0.0}
    iv.add([Request()])
    assert iv.apis[GENERATE].fields(4.0) == {"requests_per_s": 0.25}
