"""When to gather: a newline on stdin (Telegraf `signal = "STDIN"`), or our own clock.

Stdin is always drained, because Telegraf blocks when the pipe to us fills. Newlines that
arrive during a gather coalesce into one more gather, not a backlog. EOF on stdin means
Telegraf is stopping us.
"""

from __future__ import annotations

import asyncio
import math
import os
import stat
import threading
import time


class Trigger:
    """An asyncio-facing doorbell: `wait()` returns True for a gather, False to stop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._ring = asyncio.Event()
        self._stop = asyncio.Event()

    def ring(self) -> None:
        self._ring.set()

    def ring_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self._ring.set)

    def stop(self) -> None:
        self._stop.set()

    def stop_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait_stop(self) -> None:
        await self._stop.wait()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for a ring (True), a stop (False), or the timeout (True: the clock rang)."""
        if self._stop.is_set():
            return False
        ring = asyncio.ensure_future(self._ring.wait())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({ring, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ring.cancel()
            stop.cancel()
        if self._stop.is_set():
            return False
        self._ring.clear()
        return True


def stdin_is_stream(fd: int = 0) -> bool:
    """True when stdin is a pipe or socket (a parent like Telegraf), not a tty, file or /dev/null."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def start_stdin_reader(trigger: Trigger, *, gather_on_newline: bool, fd: int = 0) -> threading.Thread:
    """Drain stdin in a daemon thread; newlines ring (if asked), EOF stops."""

    def run() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                trigger.stop_threadsafe()
                return
            if gather_on_newline and b"\n" in chunk:
                trigger.ring_threadsafe()

    thread = threading.Thread(target=run, name="stdin-reader", daemon=True)
    thread.start()
    return thread


def next_aligned(now: float, interval: float) -> float:
    """The next wall-clock multiple of `interval` after `now` (like Telegraf's round_interval)."""
    return (math.floor(now / interval) + 1) * interval


def seconds_to_next_tick(interval: float, now: float | None = None) -> float:
    now = time.time() if now is None else now
    return max(0.0, next_aligned(now, interval) - now)
