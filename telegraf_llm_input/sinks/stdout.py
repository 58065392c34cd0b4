"""Line protocol on stdout: what Telegraf's execd input reads.

Each gather's lines go out in one write, flushed, so Telegraf never sees half a gather. The write
happens in a writer thread fed by a bounded queue: when nobody reads stdout (Telegraf stalled, a
full pipe) the gather loop, the other outputs and stdin EOF go on; once the queue holds
MAX_QUEUED_GATHERS gathers (or MAX_QUEUED_BYTES), the oldest are dropped and counted in
`stdout_dropped_gathers`. When the writer keeps up, `write` waits (briefly) for its gather to be
written, so a write error is reported for the gather that caused it. When nothing is queued and the write
cannot block (a pipe with room for the whole gather, /dev/null) it is made on the loop: a thread hop costs
more than the write.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import io
import math
import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, BinaryIO

from telegraf_llm_input.lineprotocol import encode_lines
from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import Metric

log = get_logger("output")

MAX_QUEUED_GATHERS = 100
MAX_QUEUED_BYTES = 8 * 1024 * 1024
WAIT_S = 0.25
"""How long `write` waits for its gather to be written when the writer was idle."""
CLOSE_S = 1.0
"""At shutdown, how long queued gathers may take to go out before they are given up."""


class StdoutSink:
    """Writes one gather's lines in a single write and flushes, off the event loop."""

    name = "stdout"

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        max_gathers: int = MAX_QUEUED_GATHERS,
        max_bytes: int = MAX_QUEUED_BYTES,
    ):
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._fd = _fileno(self._stream) if stream is None else None
        """Real stdout is written with os.write on its fd: a writer thread blocked in the buffered
        object's lock would abort the interpreter at exit."""
        self._room = _room_finder(self._fd)
        self._left: float = 0
        """Room the pipe still had after our last write on the loop: we are its only writer and its reader only
        frees more, so a gather that fits is written without asking again (`F_GETPIPE_SZ`, `FIONREAD`)."""
        self._max_gathers = max(1, max_gathers)
        self._max_bytes = max_bytes
        self._queue: deque[tuple[bytes, int, asyncio.Future | None]] = deque()
        self._queued_bytes = 0
        self._busy = False
        self._closing = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lines = 0
        self._dropped = 0
        self._dropped_gathers = 0
        self._state = StateLog(log)

    async def write(self, metrics: Sequence[Metric]) -> None:
        waiting = self.write_nowait(metrics)
        if waiting is not None:
            await waiting

    def write_nowait(self, metrics: Sequence[Metric]) -> Coroutine[Any, Any, None] | None:
        """`write` without a coroutine when the lines go out at once, on the loop (what an idle agent does every
        interval); else the coroutine that queues them for the writer thread."""
        text, lines, dropped = encode_lines(metrics)
        self._dropped += dropped
        if self._error is not None:
            self._raise_error()
        if not text:
            return None
        data = text.encode()  # UTF-8, without looking its name up
        if self._fd is not None and not self._queue and not self._busy:
            room = self._left if self._left >= len(data) else self._room(self._fd)
            if room >= len(data):
                self._emit(data)  # cannot block: a write error is raised here, for this gather
                self._left = room - len(data)
                self._lines += lines
                if self._dropped_gathers:  # only a drop makes it fail
                    self._recovered()
                return None
        return self._queued(data, lines)

    async def _queued(self, data: bytes, lines: int) -> None:
        """The gather handed to the writer thread; waited for (`WAIT_S` at most) when the writer was idle."""
        self._left = 0
        loop = asyncio.get_running_loop()
        with self._cond:
            idle = not self._queue and not self._busy
            done = loop.create_future() if idle else None
            self._queue.append((data, lines, done))
            self._queued_bytes += len(data)
            dropped = 0
            while len(self._queue) > 1 and (
                len(self._queue) > self._max_gathers or self._queued_bytes > self._max_bytes
            ):
                old, _, _ = self._queue.popleft()
                self._queued_bytes -= len(old)
                dropped += 1
            self._dropped_gathers += dropped
            self._cond.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stdout-writer", daemon=True)
            self._thread.start()
        if dropped:
            self._state.fail(
                "stalled",
                f"output stdout: nobody reads stdout ({len(self._queue)} gathers queued): "
                "dropping the oldest gathers (counted in stdout_dropped_gathers)",
            )
        elif idle:
            self._recovered()
        if done is not None:
            try:
                await asyncio.wait_for(asyncio.shield(done), WAIT_S)
            except asyncio.TimeoutError:
                return  # a slow reader: the writer thread goes on without us
            self._raise_error()

    def _recovered(self) -> None:
        if self._state.is_failing("stalled"):
            self._state.ok(
                "stalled", f"output stdout: stdout is read again; {self._dropped_gathers} gather(s) dropped in all"
            )

    def stats(self) -> Mapping[str, int]:
        return {
            "lines_written": self._lines,
            "metrics_dropped": self._dropped,
            "stdout_dropped_gathers": self._dropped_gathers,
        }

    async def close(self) -> None:
        deadline = time.monotonic() + CLOSE_S
        while time.monotonic() < deadline:
            with self._cond:
                if not self._queue and not self._busy:
                    break
            await asyncio.sleep(0.01)
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._fd is None:
            try:
                self._stream.flush()
            except (ValueError, OSError):
                pass

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                data, lines, done = self._queue.popleft()
                self._queued_bytes -= len(data)
                self._busy = True
            try:
                self._emit(data)
                self._lines += lines
            except (ValueError, OSError) as exc:  # EPIPE, a closed stream
                self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                if done is not None:
                    try:
                        done.get_loop().call_soon_threadsafe(_resolve, done)
                    except RuntimeError:  # the loop is gone
                        pass

    def _emit(self, data: bytes) -> None:
        if self._fd is None:
            self._stream.write(data)
            self._stream.flush()
            return
        try:
            written = os.write(self._fd, data)
        except InterruptedError:
            written = 0
        if written == len(data):  # the usual case: whole at once
            return
        view = memoryview(data)[written:]
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except InterruptedError:
                continue


def _fileno(stream) -> int | None:
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return None


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", None)  # Linux
_FIONREAD = 0x541B
"""Linux's FIONREAD (asm-generic/ioctls.h), as termios names it: termios is not loaded for it (the terminal UI's)."""


def _room_finder(fd: int | None) -> Callable[[int], float]:
    """How many bytes a write to `fd` takes now without blocking: a pipe's free space, all for /dev/null, else 0
    (unknown: a terminal, a socket or a file on a hung mount may block, so those go through the writer thread)."""
    try:
        st = os.fstat(fd) if fd is not None else None
    except OSError:
        st = None
    if st is None:
        return _no_room
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3):  # /dev/null
        return _all_room
    if stat.S_ISFIFO(st.st_mode) and _F_GETPIPE_SZ is not None:
        return _pipe_room  # Linux
    return _no_room


def _no_room(fd: int) -> float:
    return 0


def _all_room(fd: int) -> float:
    return math.inf


def _pipe_room(fd: int) -> float:
    """Free bytes in the pipe (its size less what the reader has not read yet): we are its only writer, so a
    write of at most this much returns at once, whole."""
    try:
        size = fcntl.fcntl(fd, _F_GETPIPE_SZ or 0)
        queued = array.array("i", [0])
        fcntl.ioctl(fd, _FIONREAD, queued, True)
    except OSError:
        return 0
    return size - queued[0]
