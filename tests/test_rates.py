"""Counter arithmetic between two scrapes: Prometheus' sum(increase()) per series, then summed."""

from telegraf_llm_input.rates import increase


def test_each_series_own_increase_then_the_sum():
    # engine0 restarted (1000 -> 10: counts from 0), engine1 grew by 2000
    assert increase({"e0": 1000.0, "e1": 1000.0}, {"e0": 10.0, "e1": 3000.0}) == (2010.0, True)


def test_no_reset_and_a_series_new_since_the_last_scrape():
    # a labelled series appears at its first increment (TGI's first `overloaded` failure): it counts from 0
    assert increase({"validation": 2.0}, {"validation": 2.0, "overloaded": 8.0}) == (8.0, False)


def test_a_series_gone_counts_nothing():
    assert increase({"e0": 5.0, "e1": 7.0}, {"e0": 9.0}) == (4.0, False)
