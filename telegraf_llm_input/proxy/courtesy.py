"""Giving up the core after a write that woke a reader, unless the core is wanted by busier work.

A socket write wakes its reader as a "sync" wake-up: the kernel expects the writer to sleep next and often queues
the reader on the writer's core. The proxy does not sleep next (it measures what it passed on, then returns to its
loop), so a server or client woken there waits for that: ~0.05 ms of the added TTFT p50 in `python -m bench proxy`
(0.12 ms -> 0.07, nginx 0.04-0.06). `sched_yield` lets it run first. With nothing else runnable on the core the
call returns at once; with a busy core (a model computing on every core) the proxy loses a whole turn to it,
milliseconds, so a yield that took that long stops the yielding for a while: under such load 64 streams slowed
6-8% with yields and 0.3-0.5% without.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

SLOW_NS = 1_000_000
"""A yield this long gave the core to a busy process for its turn, not to the reader it woke."""
PAUSE_NS = 10_000_000_000
"""How long a slow yield stops the yielding."""
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
        """While the clock is below this (ns), no yield: the last one was slow."""
        self.pauses = 0
        """Slow yields seen (each paused the yielding for PAUSE_NS)."""

    def __call__(self) -> None:
        if self._yield is None:
            return
        start = self._clock()
        if start < self.paused_until:
            return
        self._yield()
        if self._clock() - start >= SLOW_NS:
            self.paused_until = start + PAUSE_NS
            self.pauses += 1
