"""The machine's CPU counters, read once as the agent starts loading.

A CPU busy figure needs two readings; the first is taken here, and `cli` imports this module before the rest of the
agent, so the 100 ms a first figure needs (`--once`) pass while the interpreter loads everything else instead of
after it.
"""

from __future__ import annotations

import time

import psutil

psutil.cpu_percent(interval=None)
PRIMED_AT = time.monotonic()
"""`time.monotonic()` of that first reading."""
