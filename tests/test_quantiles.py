"""Quantiles against numpy computed on the same values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from telegraf_llm_input.quantiles import Accumulator, LogSketch, percentile

QS = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


@given(
    st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=300), st.sampled_from(QS)
)
@settings(max_examples=300, deadline=None)
def test_percentile_is_numpy_linear(values, q):
    assert percentile(sorted(values), q) == pytest.approx(np.percentile(values, q * 100), rel=1e-9, abs=1e-6)


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 0.5)
    assert Accumulator().quantile(0.5) is None and Accumulator().mean() is None


@pytest.mark.parametrize("dist", ["lognormal", "uniform", "bimodal"])
def test_sketch_within_one_percent_of_the_order_statistics(dist):
    rng = np.random.default_rng(7)
    if dist == "lognormal":
        values = rng.lognormal(5, 1.2, 200_000)
    elif dist == "uniform":
        values = rng.uniform(0.1, 5000, 200_000)
    else:
        values = np.concatenate([rng.normal(40, 3, 150_000).clip(0.5), rng.normal(4000, 400, 50_000)])
    acc = Accumulator(exact_limit=100_000, relative_accuracy=0.01)
    for v in values.tolist():
        acc.add(v)
    assert not acc.exact and acc.count == len(values)
    assert acc.mean() == pytest.approx(values.mean(), rel=1e-9)
    for q in QS:
        low = np.percentile(values, q * 100, method="lower")
        high = np.percentile(values, q * 100, method="higher")
        got = acc.quantile(q)
        assert low * 0.99 <= got <= high * 1.01, (q, low, got, high)


def test_accumulator_exact_up_to_the_limit_then_sketch():
    acc = Accumulator(exact_limit=1000)
    values = [float((i * 7919) % 1000) for i in range(1000)]
    for v in values:
        acc.add(v)
    assert acc.exact and acc.quantile(0.95) == np.percentile(values, 95)
    acc.add(5.0)
    assert not acc.exact


def test_sketch_zero_and_negative_values_count_as_zero():
    s = LogSketch(0.01)
    for v in (0.0, -1.0, 0.0, 10.0):
        s.add(v)
    assert s.quantile(0.5) == 0.0
    assert s.quantile(1.0) == pytest.approx(10.0, rel=0.01)
    with pytest.raises(ValueError):
        LogSketch(0)
