"""Histogram math against hand-computed values and a plain reference implementation."""

from __future__ import annotations

import math
from bisect import bisect_left
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from telegraf_llm_input.histogram import Histogram, collect, delta, increase, mean, merge, quantile, quantiles
from telegraf_llm_input.promtext import parse

INF = math.inf
FIXTURES = Path(__file__).parent / "fixtures" / "prometheus"


def hist(pairs, count=None, total=None) -> Histogram:
    pairs = [(float(u), float(c)) for u, c in pairs]
    return Histogram(pairs, float(pairs[-1][1] if count is None else count), total)


# --- building from a page ---------------------------------------------------------------------

PAGE = """\
# TYPE lat_seconds histogram
lat_seconds_bucket{engine="0",le="10",model_name="m"} 9
lat_seconds_bucket{engine="0",le="2.5",model_name="m"} 6
lat_seconds_bucket{engine="0",le="+Inf",model_name="m"} 10
lat_seconds_bucket{engine="0",le="0.5",model_name="m"} 2
lat_seconds_count{engine="0",model_name="m"} 10
lat_seconds_sum{engine="0",model_name="m"} 31.5
lat_seconds_bucket{engine="1",le="0.5",model_name="m"} 1
lat_seconds_bucket{engine="1",le="2.5",model_name="m"} 1
lat_seconds_bucket{engine="1",le="10",model_name="m"} 3
lat_seconds_bucket{engine="1",le="+Inf",model_name="m"} 3
lat_seconds_count{engine="1",model_name="m"} 3
lat_seconds_sum{engine="1",model_name="m"} 12.0
lat_seconds_bucket{engine="0",le="0.5",model_name="other"} 4
lat_seconds_bucket{engine="0",le="+Inf",model_name="other"} 4
other_metric{engine="0",model_name="m"} 7
"""


def test_collect_sorts_buckets_numerically_with_inf_last():
    hs = collect(parse(PAGE).samples, "lat_seconds")
    h = hs[(("engine", "0"), ("model_name", "m"))]
    assert h.buckets == [(0.5, 2.0), (2.5, 6.0), (10.0, 9.0), (INF, 10.0)]
    assert h.count == 10.0 and h.sum == 31.5
    # No _count/_sum on the page: count from the +Inf bucket, sum unknown.
    o = hs[(("engine", "0"), ("model_name", "other"))]
    assert o.count == 4.0 and o.sum is None
    assert len(hs) == 3


def test_collect_by_model_sums_engines():
    hs = collect(parse(PAGE).samples, "lat_seconds", by=("model_name",))
    m = hs[(("model_name", "m"),)]
    # engine 0 + engine 1, bucket by bucket: 2+1, 6+1, 9+3, 10+3
    assert m.buckets == [(0.5, 3.0), (2.5, 7.0), (10.0, 12.0), (INF, 13.0)]
    assert m.count == 13.0 and m.sum == 43.5


def test_collect_drops_series_with_other_bounds_in_a_group():
    page = PAGE.replace('lat_seconds_bucket{engine="1",le="2.5",model_name="m"} 1\n', "")
    m = collect(parse(page).samples, "lat_seconds", by=("model_name",))[(("model_name", "m"),)]
    assert m.buckets == [(0.5, 2.0), (2.5, 6.0), (10.0, 9.0), (INF, 10.0)]


def test_collect_from_vllm_dp2_fixture():
    samples = parse((FIXTURES / "vllm_dp2.txt").read_text()).samples
    name = "vllm:time_to_first_token_seconds"
    per_engine = collect(samples, name)
    assert len(per_engine) == 2
    counts = [s.value for s in samples if s.name == name + "_count"]
    merged = collect(samples, name, by=("model_name",))
    (h,) = merged.values()
    assert h.count == sum(counts)
    assert h.bounds[:3] == (0.001, 0.005, 0.01) and h.bounds[-2:] == (2560.0, INF)
    assert h.buckets[-1][1] == h.count


def test_collect_skips_bad_le():
    page = 'x_bucket{le="abc"} 1\nx_bucket{le="NaN"} 1\nx_bucket 3\nx_bucket{le="1"} 2\nx_bucket{le="+Inf"} 2\n'
    (h,) = collect(parse(page).samples, "x").values()
    assert h.buckets == [(1.0, 2.0), (INF, 2.0)]


# --- delta --------------------------------------------------------------------------------------

PREV = hist([(0.1, 2), (0.5, 6), (1, 9), (INF, 10)], total=4.0)
CUR = hist([(0.1, 3), (0.5, 10), (1, 17), (INF, 20)], total=11.5)


def test_delta_per_bucket():
    d = delta(PREV, CUR)
    # 3-2, 10-6, 17-9, 20-10; count 20-10; sum 11.5-4.0
    assert d == Histogram([(0.1, 1.0), (0.5, 4.0), (1.0, 8.0), (INF, 10.0)], 10.0, 7.5)


def test_delta_none_on_reset_or_new_bounds():
    assert delta(CUR, PREV) is None  # everything went down: server restarted
    one_bucket_down = hist([(0.1, 1), (0.5, 10), (1, 17), (INF, 20)], total=11.5)
    assert delta(PREV, one_bucket_down) is None
    sum_down = hist([(0.1, 3), (0.5, 10), (1, 17), (INF, 20)], total=3.0)
    assert delta(PREV, sum_down) is None
    new_bounds = hist([(0.2, 3), (0.5, 10), (1, 17), (INF, 20)], total=11.5)
    assert delta(PREV, new_bounds) is None
    fewer = hist([(0.5, 10), (1, 17), (INF, 20)], total=11.5)
    assert delta(PREV, fewer) is None
    nan = hist([(0.1, math.nan), (0.5, 10), (1, 17), (INF, 20)], total=11.5)
    assert delta(PREV, nan) is None


def test_delta_without_sum():
    d = delta(hist([(1, 1), (INF, 1)]), hist([(1, 3), (INF, 4)]))
    assert d is not None and d.sum is None and d.count == 3.0 and mean(d) is None


def test_delta_then_quantile_from_two_pages():
    prev = collect(parse(PAGE).samples, "lat_seconds", by=("model_name",))
    # Engine 0 saw 10 more requests, all between 0.5 s and 2.5 s, adding 20 s to the sum.
    later = PAGE
    for old, new in {
        'engine="0",le="2.5",model_name="m"} 6': 'engine="0",le="2.5",model_name="m"} 16',
        'engine="0",le="10",model_name="m"} 9': 'engine="0",le="10",model_name="m"} 19',
        'engine="0",le="+Inf",model_name="m"} 10': 'engine="0",le="+Inf",model_name="m"} 20',
        'lat_seconds_count{engine="0",model_name="m"} 10': 'lat_seconds_count{engine="0",model_name="m"} 20',
        'lat_seconds_sum{engine="0",model_name="m"} 31.5': 'lat_seconds_sum{engine="0",model_name="m"} 51.5',
    }.items():
        assert old in later
        later = later.replace(old, new)
    cur = collect(parse(later).samples, "lat_seconds", by=("model_name",))
    key = (("model_name", "m"),)
    d = delta(prev[key], cur[key])
    # New observations: 0 in (..0.5], 10 in (0.5, 2.5], 0 in (2.5, 10], 0 above; sum +20.
    assert d.buckets == [(0.5, 0.0), (2.5, 10.0), (10.0, 10.0), (INF, 10.0)]
    # p50: rank 0.5*10 = 5, bucket (0.5, 2.5] holds ranks 0..10: 0.5 + 2.0 * 5/10 = 1.5
    assert quantile(0.5, d) == pytest.approx(1.5)
    # p95: rank 9.5 -> 0.5 + 2.0 * 9.5/10 = 2.4
    assert quantile(0.95, d) == pytest.approx(2.4)
    assert mean(d) == pytest.approx(2.0)  # 20 / 10


# --- quantile: hand-computed -----------------------------------------------------------------

H = hist([(0.1, 2), (0.5, 6), (1, 9), (INF, 10)], total=4.2)


def test_quantile_interpolates_inside_bucket():
    # rank 0.5*10 = 5 -> bucket (0.1, 0.5] (cumulative 2..6): 0.1 + 0.4 * (5-2)/(6-2) = 0.4
    assert quantile(0.5, H) == pytest.approx(0.4)
    # rank 0.75*10 = 7.5 -> bucket (0.5, 1] (6..9): 0.5 + 0.5 * 1.5/3 = 0.75
    assert quantile(0.75, H) == pytest.approx(0.75)
    # rank 9 -> bucket (0.5, 1], exactly its top: 0.5 + 0.5 * 3/3 = 1.0
    assert quantile(0.9, H) == pytest.approx(1.0)


def test_quantile_first_bucket_starts_at_zero():
    # rank 0.1*10 = 1 -> first bucket (0, 0.1] holds 2: 0 + 0.1 * 1/2 = 0.05
    assert quantile(0.1, H) == pytest.approx(0.05)
    # q=0: rank 0 -> first bucket: 0 + 0.1 * 0/2 = 0
    assert quantile(0.0, H) == 0.0


def test_quantile_in_inf_bucket_returns_highest_finite_bound():
    # rank 9.5 and 9.9 exceed the last finite bucket (9): Prometheus answers its bound, 1.0
    assert quantile(0.95, H) == 1.0
    assert quantile(0.99, H) == 1.0
    assert quantile(1.0, H) == 1.0


def test_quantile_no_observations_is_none_not_zero():
    empty = hist([(0.1, 0), (0.5, 0), (INF, 0)], total=0.0)
    assert quantile(0.5, empty) is None
    assert quantile(0.99, empty) is None
    assert mean(empty) is None
    assert quantile(0.5, Histogram([], 0.0, None)) is None


def test_quantile_zero_or_negative_first_bound():
    # SGLang queue_time has le="0.0": ranks inside it return the bound itself.
    q0 = hist([(0.0, 5), (0.1, 8), (INF, 10)])
    assert quantile(0.3, q0) == 0.0  # rank 3 <= 5
    # rank 6 -> bucket (0, 0.1] (5..8): 0 + 0.1 * 1/3
    assert quantile(0.6, q0) == pytest.approx(0.1 / 3)
    neg = hist([(-1, 2), (1, 4), (INF, 4)])
    # rank 3 -> bucket (-1, 1] (2..4): -1 + 2 * 1/2 = 0
    assert quantile(0.75, neg) == pytest.approx(0.0)
    assert quantile(0.25, neg) == -1.0  # rank 1 in the first bucket, bound <= 0


def test_quantile_edge_cases_like_prometheus():
    assert math.isnan(quantile(math.nan, H))
    assert quantile(-0.1, H) == -INF
    assert quantile(1.1, H) == INF
    assert math.isnan(quantile(0.5, hist([(0.1, 2), (0.5, 6)])))  # no +Inf bucket
    assert math.isnan(quantile(0.5, hist([(INF, 6)])))  # only +Inf: fewer than two buckets
    # q=0 with an empty first bucket: Go divides 0 by 0
    assert math.isnan(quantile(0.0, hist([(0.1, 0), (0.5, 3), (INF, 3)])))


def test_quantile_repairs_non_monotonic_buckets():
    # counts 5, 3, 8, 8 -> Prometheus carries 5 over the dip: 5, 5, 8, 8
    h = hist([(1, 5), (2, 3), (3, 8), (INF, 8)])
    # rank 4 -> first bucket: 0 + 1 * 4/5 = 0.8
    assert quantile(0.5, h) == pytest.approx(0.8)
    # rank 6 -> bucket (2, 3] (5..8): 2 + 1 * (6-5)/(8-5) = 2.3333
    assert quantile(0.75, h) == pytest.approx(2 + 1 / 3)


def test_quantile_coalesces_equal_bounds_and_ignores_float_noise():
    # le="1" and le="1.0" from two series: 1+1 = 2 at bound 1
    h = hist([(1.0, 1), (1.0, 1), (2.0, 3), (INF, 3)])
    # rank 1.5 -> first bucket (0, 1] holds 2: 1 * 1.5/2 = 0.75
    assert quantile(0.5, h) == pytest.approx(0.75)
    noisy = hist([(1, 10), (2, 10.000000000000002), (INF, 10)])
    # the 2e-15 step is float noise: treated as 10, so rank 5 stays in (0, 1]: 0.5
    assert quantile(0.5, noisy) == pytest.approx(0.5)


def test_mean_and_merge():
    assert mean(H) == pytest.approx(0.42)  # 4.2 / 10
    a = hist([(1, 1), (2, 3), (INF, 4)], total=5.0)
    b = hist([(1, 0), (2, 2), (INF, 2)], total=3.0)
    m = merge([a, b])
    assert m == Histogram([(1.0, 1.0), (2.0, 5.0), (INF, 6.0)], 6.0, 8.0)
    assert merge([a, hist([(1, 0), (3, 2), (INF, 2)])]) is None
    assert merge([]) is None
    assert merge([a, hist([(1, 0), (2, 2), (INF, 2)])]).sum is None  # one without _sum


# --- properties against a plain reference --------------------------------------------------------


def reference_quantile(q: float, bounds: list[float], counts: list[float]) -> float | None:
    """histogram_quantile for well-formed input, by a linear walk (bounds > 0, +Inf last)."""
    total = counts[-1]
    if total == 0:
        return None
    rank = q * total
    for i in range(len(bounds) - 1):
        if counts[i] >= rank:
            below = counts[i - 1] if i else 0.0
            lower = bounds[i - 1] if i else 0.0
            inside = counts[i] - below
            if inside == 0:
                return math.nan
            return lower + (bounds[i] - lower) * (rank - below) / inside
    return bounds[-2]


bound_lists = st.lists(
    st.floats(min_value=1e-4, max_value=1e4, allow_nan=False), min_size=1, max_size=12, unique=True
).map(sorted)


@st.composite
def histograms(draw):
    bounds = draw(bound_lists) + [INF]
    steps = draw(st.lists(st.integers(0, 20), min_size=len(bounds), max_size=len(bounds)))
    counts, c = [], 0
    for s in steps:
        c += s
        counts.append(float(c))
    return hist(list(zip(bounds, counts)))


@settings(max_examples=300, deadline=None)
@given(histograms(), st.floats(min_value=0.0, max_value=1.0))
def test_quantile_matches_reference(h: Histogram, q: float):
    ours = quantile(q, h)
    theirs = reference_quantile(q, h.bounds, [c for _, c in h.buckets])
    if theirs is None or ours is None:
        assert ours is None and theirs is None
    elif math.isnan(theirs):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(histograms(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_quantile_is_monotonic_in_q(h: Histogram, q1: float, q2: float):
    lo, hi = sorted((q1, q2))
    a, b = quantile(lo, h), quantile(hi, h)
    if a is None:
        assert b is None
    elif not (math.isnan(a) or math.isnan(b)):
        assert a <= b + 1e-9 * max(1.0, abs(b))


def from_observations(bounds: list[float], values: list[float]) -> Histogram:
    counts = [float(sum(1 for v in values if v <= b)) for b in bounds] + [float(len(values))]
    return Histogram(list(zip(bounds + [INF], counts)), float(len(values)), float(sum(values)))


@settings(max_examples=200, deadline=None)
@given(
    bound_lists,
    st.lists(st.floats(0.0, 2e4, allow_nan=False), max_size=30),
    st.lists(st.floats(0.0, 2e4, allow_nan=False), min_size=1, max_size=30),
    st.floats(0.01, 1.0),
)
def test_delta_isolates_new_observations(bounds, old, new, q):
    prev = from_observations(bounds, old)
    cur = from_observations(bounds, old + new)
    d = delta(prev, cur)
    only_new = from_observations(bounds, new)
    assert d is not None
    assert d.buckets == only_new.buckets and d.count == only_new.count
    assert d.sum == pytest.approx(only_new.sum, rel=1e-9, abs=1e-6)
    est = quantile(q, d)
    # The estimate lies in the bucket holding the true q-quantile of the new observations.
    ordered = sorted(new)
    true = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    i = bisect_left(bounds, true)
    lower = bounds[i - 1] if i else 0.0
    upper = bounds[i] if i < len(bounds) else bounds[-1]
    assert lower - 1e-9 <= est <= upper + 1e-9


# --- against the real Prometheus engine (promtool evaluates histogram_quantile) -----------------


def _promtool_cases() -> list[tuple[str, list[tuple[str, float]], float]]:
    """(series id, [(le, cumulative count)], q) covering interpolation, +Inf rank, le<=0,
    non-monotonic counts, equal bounds from two series, and random real-looking buckets."""
    import random

    rnd = random.Random(20261123)
    cases = [
        ("interp", [("0.1", 2), ("0.5", 6), ("1", 9), ("+Inf", 10)], 0.5),
        ("top", [("0.1", 2), ("0.5", 6), ("1", 9), ("+Inf", 10)], 0.95),
        ("first", [("0.1", 2), ("0.5", 6), ("1", 9), ("+Inf", 10)], 0.1),
        ("zero_le", [("0.0", 5), ("0.1", 8), ("+Inf", 10)], 0.3),
        ("zero_le2", [("0.0", 5), ("0.1", 8), ("+Inf", 10)], 0.6),
        ("negative", [("-1", 2), ("1", 4), ("+Inf", 4)], 0.75),
        ("dip", [("1", 5), ("2", 3), ("3", 8), ("+Inf", 8)], 0.75),
        ("dup", [("1", 1), ("1.0", 1), ("2", 3), ("+Inf", 3)], 0.5),
    ]
    ttft = [
        "0.001",
        "0.005",
        "0.01",
        "0.02",
        "0.04",
        "0.06",
        "0.08",
        "0.1",
        "0.25",
        "0.5",
        "0.75",
        "1.0",
        "2.5",
        "5.0",
        "7.5",
        "10.0",
        "20.0",
        "40.0",
        "80.0",
        "160.0",
        "640.0",
        "2560.0",
    ]
    tgi = [repr(0.0001 * 1.5**i) for i in range(1, 36)]
    for i in range(40):
        bounds = ttft if i % 2 else tgi
        count, pairs = 0, []
        for le in bounds + ["+Inf"]:
            count += rnd.choice([0, 0, 1, 3, 17, 250])
            pairs.append((le, count))
        if count:
            cases.append((f"r{i}", pairs, rnd.choice([0.5, 0.9, 0.95, 0.99, rnd.random()])))
    return cases


def test_quantile_equals_prometheus_engine(tmp_path):
    import subprocess

    from tests.support.procs import find_binary

    promtool = find_binary("promtool")
    if promtool is None:
        pytest.skip("promtool not installed: run `apt-get install prometheus` (scripts/test.sh does)")
    series, exprs = [], []
    for ident, pairs, q in _promtool_cases():
        for le, c in pairs:
            series.append(f"      - series: 'lat_bucket{{h=\"{ident}\",le=\"{le}\"}}'\n        values: '{c}'\n")
        ours = quantile(q, hist([(float(le), c) for le, c in pairs]))
        assert ours is not None and math.isfinite(ours), ident
        exprs.append(
            f"      - expr: 'histogram_quantile({q!r}, lat_bucket{{h=\"{ident}\"}})'\n"
            f"        eval_time: 0m\n"
            f"        exp_samples:\n"
            f"          - labels: '{{h=\"{ident}\"}}'\n"
            f"            value: {ours!r}\n"
        )
    (tmp_path / "rules.yml").write_text("groups: []\n")
    (tmp_path / "test.yml").write_text(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n"
        + "".join(series)
        + "    promql_expr_test:\n"
        + "".join(exprs)
    )
    done = subprocess.run(
        [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_increase_per_series_then_merged():
    """One engine restarted (its buckets count from 0), another grew: Prometheus' sum(increase(x_bucket))."""
    from telegraf_llm_input.histogram import Histogram, increase

    b = [0.1, 1.0, math.inf]
    prev = {
        (("engine", "0"),): Histogram(list(zip(b, [100.0, 200.0, 200.0])), 200.0, 100.0),
        (("engine", "1"),): Histogram(list(zip(b, [100.0, 200.0, 200.0])), 200.0, 100.0),
    }
    cur = {
        (("engine", "0"),): Histogram(list(zip(b, [4.0, 4.0, 4.0])), 4.0, 2.0),
        (("engine", "1"),): Histogram(list(zip(b, [100.0, 300.0, 300.0])), 300.0, 150.0),
    }
    d, reset = increase(prev, cur)
    assert reset and d.buckets == list(zip(b, [4.0, 104.0, 104.0])) and d.count == 104.0 and d.sum == 52.0


def test_increase_skips_a_series_whose_buckets_changed():
    from telegraf_llm_input.histogram import Histogram, increase

    prev = {(): Histogram([(0.1, 1.0), (math.inf, 2.0)], 2.0, 1.0)}
    cur = {(): Histogram([(0.5, 1.0), (math.inf, 3.0)], 3.0, 2.0)}
    assert increase(prev, cur) == (None, True)


def test_quantiles_at_once_are_each_quantile():
    h = Histogram([(0.1, 2.0), (0.5, 2.0), (1.0, 7.0), (1.0, 1.0), (5.0, 6.0), (math.inf, 9.0)], 9.0, 12.0)
    qs = (0.0, 0.25, 0.5, 0.9, 0.99, 1.0, -1.0, 2.0)
    assert quantiles(qs, h) == [quantile(q, h) for q in qs]
    assert math.isnan(quantiles((0.5,), Histogram([(1.0, 1.0)], 1.0, 1.0))[0])  # no +Inf bucket
    assert quantiles((0.5, 0.9), Histogram([], 0.0, None)) == [None, None]


def test_a_histogram_holds_its_bounds_once_and_compares_by_value():
    pairs = [(1.0, 2.0), (INF, 3.0)]
    parsed = Histogram(pairs, 3.0, 4.0)
    planned = Histogram.of(parsed.bounds, (2.0, 3.0), 3.0, 4.0)  # a read plan's tuple of bounds, held as given
    assert planned.bounds is parsed.bounds and planned.buckets == pairs
    assert planned == parsed and repr(planned) == repr(parsed) == f"Histogram(buckets={pairs!r}, count=3.0, sum=4.0)"
    # a series reset between a parsed scrape and a planned one counts from 0: the bounds compare alike either way
    before = Histogram([(1.0, 5.0), (INF, 6.0)], 6.0, 9.0)
    assert increase({(): before}, {(): planned}) == (planned, True)
    assert delta(Histogram([(1.0, 1.0), (INF, 2.0)], 2.0, 1.0), planned) == Histogram(
        [(1.0, 1.0), (INF, 1.0)], 1.0, 3.0
    )
