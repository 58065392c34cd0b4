"""The proxy's event loop: uvloop's (libuv's, in C) where it is installed, as the `proxy` extra installs it; else
asyncio's own, the same proxy a little slower.

Each wake of the proxy (a request, a token) goes through the loop's machinery before llhttp sees a byte: in Python
~5-8 us of an added TTFT of ~0.065 ms on the bench's 2-core VM. On uvloop the added TTFT fell ~0.01 ms at p50 and
more at p99 (`python -m bench proxy`, docs/performance.md). An earlier build missed the 64-stream 1% on uvloop
(its first tokens came late in the burst of 64 new connections); this one meets it on both loops.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

try:
    _uvloop_new: Callable[[], asyncio.AbstractEventLoop] | None = importlib.import_module("uvloop").new_event_loop
except ImportError:  # asyncio's own loop
    _uvloop_new = None


def new_loop() -> asyncio.AbstractEventLoop:
    """The loop the `proxy` command (and the tests' proxy) runs on."""
    return _uvloop_new() if _uvloop_new is not None else asyncio.new_event_loop()


def name() -> str:
    return "uvloop" if _uvloop_new is not None else "asyncio"
