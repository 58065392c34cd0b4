"""Pure arithmetic on counters between two scrapes."""

from __future__ import annotations


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
