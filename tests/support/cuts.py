"""A stream cut into the pieces reads might bring it in: what the incremental readers' property tests feed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

S = TypeVar("S", str, bytes)


def cut(stream: S, at: Sequence[int]) -> list[S]:
    """`stream` cut at the offsets `at` (clamped to its length, repeats ignored): the pieces, in order."""
    bounds = sorted({min(c, len(stream)) for c in at})
    return [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)])]
