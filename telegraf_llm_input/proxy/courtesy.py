"""Giving up the core after a write that woke a reader, unless the core is wanted by busier work.

A socket write wakes its reader as a "sync" wake-up: the kernel expects the writer to sleep next and often queues
the reader on the writer's core. The proxy does not sleep next (it measures what it passed on, then returns to its
loop), so a server or client woken there waits for that: ~0.05 ms of the added TTFT p50 in `python -m bench proxy`
(0.12 ms -> 0.07, nginx 0.04-0.06). `sched_yield` lets it run first. With nothing else runnable on the core the
call returns at once; with a busy core (a model computing on every core) the proxy loses a whole turn to it,
milliseconds, so yields that take that long stop the yielding for a while: under such load 64 streams slowed
6-8% with yields and 0.3-0.5% without. What stops it is their share, not their count: under a busy core one
yield in three was slow, while a VM's host takes a core for a millisecond every second or two whatever the load
(a rule of two slow yields within 10 s paused the yielding in half of the benchmark's runs, each then 0.04 ms
slower). And only for an exchange alone: with others in progress the proxy's turn is theirs too (64 streams
starting at once on busy cores slowed 1%).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

SLOW_NS = 500_000
"""A yield this long gave the core to a busy process for its turn (4 ms on the bench's VM, with a process spinning
on each core), not to the reader it woke (40-180 us in `python -m bench proxy`)."""
PAUSE_NS = 10_000_000_000
"""How long the yielding stops once slow yields are too many."""
SLOW_WEIGHT = 8
"""A slow yield counts as much as this many quick ones: the yielding stops when slow ones come more often than
about one in eight (under a busy core one in three was slow, the others quick: the spinning process was on the
other core; a VM's hiccups come one in thousands)."""
PAUSE_SCORE = 2 * SLOW_WEIGHT
SCHED_YIELD: Callable[[], None] | None = getattr(os, "sched_yield", None)
"""POSIX's; None where the platform has none (the proxy then never yields)."""


class Courtesy:
    """Call after a write whose reader should run before the proxy's own work."""

    def __init__(
        self,
        yield_core: Callable[[], None] | None = SCHED_YIELD,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._yield = yield_core
        self._clock = clock
        self.paused_until = 0
        """While the clock is below this (ns), no yield."""
        self.score = 0
        """Slow yields x SLOW_WEIGHT, less one for each quick one (never below 0); PAUSE_SCORE stops the yielding."""
        self.exchanges = 0
        """Exchanges in progress (the exchange counts itself in and out)."""
        self.pauses = 0
        """Times the yielding stopped (for PAUSE_NS each)."""

    def __call__(self) -> None:
        if self._yield is None or self.exchanges != 1:
            return
        start = self._clock()
        if start < self.paused_until:
            return
        self._yield()
        if self._clock() - start < SLOW_NS:
            if self.score:
                self.score -= 1
            return
        self.score += SLOW_WEIGHT
        if self.score >= PAUSE_SCORE:
            self.paused_until = start + PAUSE_NS
            self.pauses += 1
            self.score = 0
