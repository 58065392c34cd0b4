"""When to gather: a newline on stdin (Telegraf `signal = "STDIN"`), or our own clock.

Stdin is always drained, because Telegraf blocks when the pipe to us fills. Newlines that
arrive during a gather coalesce into one more gather, not a backlog. EOF on stdin means
Telegraf is stopping us.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
import time
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


class Trigger:
    """An asyncio-facing doorbell: `wait()` returns True for a gather, False to stop.

    One future is awaited at a time, woken by a ring, a stop or a gather the clock handed over: no task or timer is
    made per wait, and a gather runs in the waiting task itself (`graced`). The clock (`every`) starts each gather
    in its own callback, so a gather with nothing to wait for (an idle agent's) is one loop step an interval, the
    waiting task never resumed: less than the bare `await asyncio.sleep()` loop's two.
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
        self._clock: asyncio.TimerHandle | None = None
        self._interval = 0.0
        self._work: Callable[[], Coroutine[Any, Any, object] | None] | None = None
        self._idle: asyncio.Task | None = None
        """The task waiting in `wait()` while nothing is pending for it: the clock starts gathers only then."""
        self._handed: Awaitable[object] | None = None
        """A gather the clock started that must wait for something: `wait()`'s caller finishes it (`handed`)."""

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
        if self._clock is not None:
            self._clock.cancel()
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

    def every(self, interval: float, work: Callable[[], Coroutine[Any, Any, object] | None]) -> None:
        """Start `work()` at each wall-clock multiple of `interval`, in the clock's callback: `work()` does what it
        can at once (an idle gather: all of it) and returns None, or a coroutine, which is started there as the task
        waiting in `wait()` (asyncio sees that task current, as if it ran there) and, when it suspends, handed to
        that task to finish (`handed`). A tick that finds the task busy (a gather still running, a ring pending) is
        skipped, as a late gather's missed ticks always were.

        Why: resuming a task is a second loop step (a zero-timeout `epoll_wait`) and a coroutine resumed on cold
        caches, every interval, for a gather that has nothing to wait for; making and stepping a coroutine that
        never suspends is more of the same."""
        self._interval, self._work = interval, work
        self._arm()

    def _arm(self) -> None:
        if not self._stopped:
            now = time.time()
            self._clock = self._loop.call_at(self._loop.time() + (next_aligned(now, self._interval) - now), self._tick)

    def _tick(self) -> None:
        task, work = self._idle, self._work
        if task is not None and work is not None and not (self._rung or self._stopped or self._handed):
            try:
                started = work()
            except Exception as exc:  # noqa: BLE001 - raised again in the task, where gathers' failures are logged
                self._handed = _raising(exc)
            else:
                self._handed = None if started is None else _started(self._loop, task, started)
            if self._handed is not None:
                self._wake()
        self._arm()

    def handed(self) -> Awaitable[object] | None:
        """The gather the clock started and handed over (once), if any."""
        handed, self._handed = self._handed, None
        return handed

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
        if self._stopped:  # a gather the clock handed over as the stop came
            self._cut = self._loop.call_later(grace, self._cancel_graced)
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
        """Wait for a ring (True), a gather handed over (True: the caller awaits `handed()`), a stop (False), or the
        timeout (True)."""
        if not self._stopped and not self._rung and self._handed is None:
            self._idle = asyncio.current_task()
            try:
                await self._sleep(timeout)
            finally:
                self._idle = None
        if self._handed is not None:
            return True
        if self._stopped:
            return False
        self._rung = False
        return True


def _started(
    loop: asyncio.AbstractEventLoop, task: asyncio.Task, work: Coroutine[Any, Any, object]
) -> Awaitable[object] | None:
    """Run `work` as `task` (suspended now) up to its first suspension: None when it finished there, else what
    finishes it (awaited in `task`). A failure is kept to be raised where it is awaited."""
    _enter_task(loop, task)
    try:
        yielded = work.send(None)
    except StopIteration:
        return None
    except Exception as exc:  # noqa: BLE001 - raised again in the task, where gathers' failures are logged
        return _raising(exc)
    finally:
        _leave_task(loop, task)
    return _Resumed(work, yielded)


class _Resumed:
    """Awaiting this finishes a coroutine already started elsewhere: first what it yielded there is passed on to the
    awaiting task, then everything goes through (what the task sends or throws in, what the coroutine yields)."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, object], first: object):
        self._coro, self._first = coro, first

    def __await__(self) -> Generator[Any, Any, object]:
        coro, yielded = self._coro, self._first
        while True:
            try:
                try:
                    sent = yield yielded
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:  # a cancel, most often: the coroutine handles it as it would have
                    yielded = coro.throw(exc)
                else:
                    yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _raising(exc: Exception) -> object:
    raise exc


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
    """The next wall-clock multiple of `interval` after `now` (like Telegraf's round_interval). In floats only
    (exact: `now % interval` is): the seconds since 1970 as an int and back was the only use of that code in an
    idle interval."""
    return now - now % interval + interval
