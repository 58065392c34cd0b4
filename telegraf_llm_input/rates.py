"""Pure arithmetic on counters between two scrapes."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

_K = TypeVar("_K", bound=Hashable)


def counter_delta(previous: float | None, current: float | None) -> float | None:
    """Increase of a monotonic counter, or None when unknown or the counter was reset."""
    if previous is None or current is None or current < previous:
        return None
    return current - previous


def rate(previous: float | None, current: float | None, seconds: float) -> float | None:
    """Per-second increase, or None on reset, missing data or a non-positive interval."""
    delta = counter_delta(previous, current)
    if delta is None or seconds <= 0:
        return None
    return delta / seconds


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when the denominator is missing or zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def increase(previous: Mapping[_K, float], current: Mapping[_K, float]) -> tuple[float, bool]:
    """Prometheus' `sum(increase(...))` between two scrapes: each series' own increase, then the sum.

    A series that went down was reset and counts from 0 (its current value), as `increase` does. A
    series new since the previous scrape also counts from 0: client libraries create a labelled
    series at its first increment (TGI's first `overloaded` failure). Returns the sum and whether
    any series was reset. Summing first would hide one engine's reset behind another's growth.
    """
    total = 0.0
    reset = False
    for key, value in current.items():
        before = previous.get(key, 0.0)
        if value < before:
            reset = True
            total += value
        else:
            total += value - before
    return total, reset
