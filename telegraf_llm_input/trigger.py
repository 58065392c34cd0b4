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
import sys
import threading
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Trigger:
    """An asyncio-facing doorbell: `wait()` returns True for a gather, False to stop.

    One future is awaited at a time, woken by a ring, a stop or the clock: no task or timer is made per wait
    beyond the clock's one handle, and a gather runs in the waiting task itself (`graced`), so an idle agent's
    interval is the bare loop's two steps (the timer, then the task), as `await asyncio.sleep()` would be.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._rung = False
        self._stopped = False
        self._waiters: list[asyncio.Future[None]] = []
        self._graced: tuple[asyncio.Task, float] | None = None
        """The task inside `graced` and its grace; a stop meanwhile sets `_cut` to cancel it when that is over."""
        self._cut: asyncio.TimerHandle | None = None
        self._cutting = False

    def _wake(self, *_: object) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def ring(self) -> None:
        self._rung = True
        self._wake()

    def ring_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self.ring)

    def stop(self) -> None:
        self._stopped = True
        self._wake()
        if self._graced is not None and self._cut is None:
            self._cut = self._loop.call_later(self._graced[1], self._cancel_graced)

    def _cancel_graced(self) -> None:
        if self._graced is not None:
            self._cutting = True
            self._graced[0].cancel()

    def stop_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self.stop)

    @property
    def stopping(self) -> bool:
        return self._stopped

    async def _sleep(self, timeout: float | None) -> None:
        """Until a ring or stop (or the timeout passes)."""
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        timer = None if timeout is None else self._loop.call_later(timeout, self._wake)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)
            if timer is not None:
                timer.cancel()

    async def graced(self, work: Awaitable[T], grace: float) -> T | None:
        """`await work` in this task; a stop meanwhile leaves it `grace` seconds to finish, then cancels it (None).

        Why not a task of its own watched by this one: that is three more loop steps, a task and a future every
        gather, for the one case (a stop inside a gather) this cancel covers. Rings meanwhile are kept for the
        next `wait`."""
        task = asyncio.current_task()
        assert task is not None and self._graced is None
        self._graced = (task, grace)
        try:
            return await work
        except asyncio.CancelledError:
            if not self._cutting:
                raise  # not ours: whoever cancelled the task gets it
            if sys.version_info >= (3, 11):
                task.uncancel()  # ours, handled: asyncio.timeout() in what runs next counts right
            return None
        finally:
            self._graced = None
            self._cutting = False
            if self._cut is not None:
                self._cut.cancel()
                self._cut = None

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for a ring (True), a stop (False), or the timeout (True: the clock rang)."""
        if not self._stopped and not self._rung:
            await self._sleep(timeout)
        if self._stopped:
            return False
        self._rung = False
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
