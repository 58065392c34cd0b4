"""A database output: queue each gather, flush batches in the background, buffer through outages.

Every flushed batch goes to the buffer first (disk when a directory is known), and a background
task drains the buffer oldest-first. So a batch is on disk before anything is sent: a SIGKILL
at any moment loses nothing, and a batch that was sent but not yet removed is sent again after a
restart (at-least-once, never exactly-once). Points wait in memory (up to one flush interval) only
while the database is known to be up: from start until its first accepted write, and from its first
failure until it accepts one again, every gather goes to the buffer at once and is sent at once.

Transient failures (connect errors, timeouts, 429, 5xx) keep the batch and back off exponentially
with jitter, honouring `Retry-After`, but never longer than one flush interval (so delivery resumes
within one interval of the database answering), and a success of any other database output ends
the wait at once. 413 (body too large) splits the batch in halves until the server takes it (and
later batches are sent in pieces that size). Other 4xx mean the data or the request is wrong: the
batch is dropped and counted, or for a partial write (`partial write: ... dropped=N`, InfluxDB 1.x
and 2.x) only the N points the server says it dropped. A run of 4xx answers is logged once when it
starts and once when writes are accepted again, with what was dropped in between.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from telegraf_llm_input.lineprotocol import encode_lines
from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sinks.buffer import DiskBuffer, MemoryBuffer

log = get_logger("output")

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 60.0
REPLAY_MIN_GAP_S = 0.05
"""Backlog replay is paced: at most ~20 batches a second, so recovery does not flood the database."""
CLOSE_SEND_S = 1.0
"""At shutdown, how long the last sends may take before the batch is simply left in the buffer."""
PARTIAL_WRITE = re.compile(r"partial write\b.*?\bdropped=(\d+)", re.S)
"""InfluxDB 1.x and 2.x (tsdb.PartialWriteError): `partial write: <reason> dropped=<n>`."""


class WriteError(Exception):
    """A write the server answered with an error status."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.status == 429 or self.status >= 500 or self.status == 408


Send = Callable[[str], Awaitable[None]]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds only; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, min(seconds, BACKOFF_MAX_S * 5))


def backoff_s(attempt: int, rng: random.Random, cap: float = BACKOFF_MAX_S) -> float:
    """Exponential backoff with full jitter: uniform in [min, min * 2**attempt], at most `cap`."""
    cap = max(0.01, min(cap, BACKOFF_MAX_S))
    floor = min(BACKOFF_MIN_S, cap)
    ceiling = min(cap, BACKOFF_MIN_S * (2 ** min(attempt, 16)))
    return rng.uniform(floor, max(floor, ceiling))


def dropped_by_server(message: str, points: int) -> int:
    """How many of a rejected batch's points the server dropped: N of a partial write, else all."""
    m = PARTIAL_WRITE.search(message)
    return min(points, int(m.group(1))) if m else points


def split_text(text: str) -> tuple[str, int, str, int]:
    """A batch cut in two halves by lines: (first, its points, second, its points)."""
    lines = text.splitlines(keepends=True)
    half = len(lines) // 2
    return "".join(lines[:half]), half, "".join(lines[half:]), len(lines) - half


@dataclass
class Rejection:
    """A run of 4xx answers of one status, logged at its start and its end."""

    message: str
    batches: int = 0
    points: int = 0


@dataclass
class Counters:
    written: int = 0
    dropped: int = 0
    errors: int = 0


_LIVE: weakref.WeakSet[BatchingSink] = weakref.WeakSet()
"""Every database output of this process: a success of one ends the others' backoff wait."""


class BatchingSink:
    def __init__(
        self,
        name: str,
        send: Send,
        *,
        batch_size: int,
        flush_interval: float,
        buffer: DiskBuffer | MemoryBuffer,
        describe_error: Callable[[WriteError], str] | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
        secrets: Sequence[str] = (),
    ):
        self.name = name
        self._send = send
        self._batch_size = max(1, batch_size)
        self._flush_interval = flush_interval
        self.buffer = buffer
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        """Never in a log line, whatever a client library or a server puts in its error text."""
        self._describe_error = describe_error or (lambda e: str(e))
        self._close_transport = close
        self._pending: list[str] = []
        self._pending_points = 0
        self._counters = Counters()
        self._state = StateLog(log)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._rng = random.Random()
        self._attempt = 0
        self._retry_now = asyncio.Event()
        self._rejections: dict[int, Rejection] = {}
        self._max_points: int | None = None
        """Learned from a 413: send at most this many points per request."""
        self._full_drops = 0
        self._proven = False
        """The database accepted a write since start: only then may points wait in memory."""
        self._sending: asyncio.Future[float | None] | None = None
        """The send in flight, if any: close() lets it finish rather than cut it (its batch would go twice)."""
        _LIVE.add(self)

    # --- the agent side ---------------------------------------------------------------------
    async def write(self, metrics: Sequence[Metric]) -> None:
        self.write_nowait(metrics)

    def write_nowait(self, metrics: Sequence[Metric]) -> None:
        """`write`: it never waits (the sender is a task of its own), so the agent need not make a coroutine."""
        text, lines, _ = encode_lines(metrics)
        if text:
            self._pending.append(text)
            self._pending_points += lines
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        if self._attempt:
            self._persist_pending()  # in an outage every gather goes to disk at once: a kill loses nothing
        elif not self._proven:
            self._persist_pending()  # the database may be down since start: on disk first, then try it
            self._wake.set()
        elif self._pending_points >= self._batch_size:
            self._wake.set()

    def stats(self) -> Mapping[str, int]:
        return {
            "output_buffered_points": self.buffer.points + self._pending_points,
            "output_dropped_points": self._counters.dropped + self.buffer.dropped_points,
            "output_written_points": self._counters.written,
            "output_errors": self._counters.errors,
        }

    async def close(self) -> None:
        deadline = time.monotonic() + CLOSE_SEND_S
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        sending = self._sending
        if sending is not None and not sending.done():
            # A send in flight may finish inside the budget: cancelling it would send its batch twice.
            await asyncio.wait({sending}, timeout=CLOSE_SEND_S)
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        self._persist_pending()
        # The database looked fine: send what is left within a short budget; the rest (or all of it
        # in an outage) stays in the buffer for the next start.
        while self._attempt == 0 and (batch := self.buffer.peek()) is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                if await asyncio.wait_for(self._send_one(batch), left) is not None:
                    break
            except Exception:
                break
        _LIVE.discard(self)
        if self._close_transport is not None:
            try:
                await asyncio.wait_for(self._close_transport(), 0.3)
            except Exception:
                pass

    # --- the background side ----------------------------------------------------------------
    def _persist_pending(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending, self._pending_points = [], 0
        # Split into batch_size pieces so one write never exceeds what the user asked for.
        lines = text.splitlines(keepends=True)
        for i in range(0, len(lines), self._batch_size):
            chunk = lines[i : i + self._batch_size]
            try:
                self.buffer.push("".join(chunk), len(chunk))
            except OSError as exc:
                self._counters.errors += 1
                self._counters.dropped += len(chunk)
                self._state.fail(
                    "buffer",
                    f"output {self.name}: cannot write the buffer: {_describe_exc(exc)}; "
                    f"this batch of {len(chunk)} point(s) dropped (counted in output_dropped_points)",
                    logging.ERROR,
                )
                continue
            self._state.ok("buffer", f"output {self.name}: buffer writable again")
            full = self.buffer.full_drops
            if full > self._full_drops:
                self._state.fail(
                    "full",
                    f"output {self.name}: filesystem of the buffer is full: dropping the oldest "
                    f"buffered batches to make room (counted in output_dropped_points)",
                )
                self._full_drops = full
            elif self._state.is_failing("full"):
                self._state.ok(
                    "full",
                    f"output {self.name}: buffer has room again; {self.buffer.dropped_points} point(s) dropped so far",
                )

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            self._persist_pending()
            await self._drain()

    async def _drain(self) -> None:
        first = True
        while True:
            batch = self.buffer.peek()
            if batch is None:
                return
            if not first:
                await asyncio.sleep(REPLAY_MIN_GAP_S)
            first = False
            # Its own task, shielded: stopping the loop (close) must not cut a request the server may have taken.
            self._sending = asyncio.ensure_future(self._send_one(batch))
            delay = await asyncio.shield(self._sending)
            if delay is not None:
                # Retry after the backoff itself (at most one flush interval), or at once when another
                # output just got through: not a whole flush interval more on top.
                self._retry_now.clear()
                try:
                    await asyncio.wait_for(self._retry_now.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                first = True
                continue
            if self._pending_points >= self._batch_size:
                self._persist_pending()

    async def _send_one(self, batch) -> float | None:
        """Send the oldest batch. None when it left the buffer; else the seconds to back off."""
        try:
            rejected = await self._deliver(batch.text, batch.points)
        except WriteError as exc:
            self._counters.errors += 1
            return self._backoff(self._describe(exc), exc.retry_after)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._counters.errors += 1
            return self._backoff(self._scrub(_describe_exc(exc)), None)
        self.buffer.pop(batch)
        self._proven = True
        self._counters.written += batch.points - rejected
        self._counters.dropped += rejected
        if self._attempt:
            self._state.ok("send", f"output {self.name}: writing again; backlog {self.buffer.points} point(s)")
        self._attempt = 0
        if not rejected:
            self._accepted()
        for other in list(_LIVE):
            if other is not self:
                try:
                    other._retry_now.set()
                except RuntimeError:  # an output of an event loop that is gone
                    pass
        return None

    async def _deliver(self, text: str, points: int) -> int:
        """Send `text`, in pieces when the server wants smaller bodies; returns the points it rejected
        for good (4xx). A transient error raises: the whole batch stays buffered (pieces already
        sent are sent again: at-least-once)."""
        if self._max_points is not None and points > self._max_points:
            first, n1, second, n2 = split_text(text)
            return await self._deliver(first, n1) + await self._deliver(second, n2)
        try:
            await self._send(text)
            return 0
        except WriteError as exc:
            if exc.transient:
                raise
            if exc.status == 413 and points > 1:
                if self._max_points is None:
                    log.info(
                        "output %s: the server refused a body of %d point(s) (HTTP 413: %s); splitting batches "
                        "until it takes them",
                        self.name,
                        points,
                        self._scrub(exc.message),
                    )
                self._max_points = max(1, min(self._max_points or points, points) // 2)
                first, n1, second, n2 = split_text(text)
                return await self._deliver(first, n1) + await self._deliver(second, n2)
            self._counters.errors += 1
            dropped = dropped_by_server(exc.message, points)
            self._rejected(exc, points, dropped)
            return dropped

    def _describe(self, exc: WriteError) -> str:
        return self._scrub(self._describe_error(exc))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _rejected(self, exc: WriteError, points: int, dropped: int) -> None:
        run = self._rejections.get(exc.status)
        if run is None:
            run = self._rejections[exc.status] = Rejection(self._describe(exc))
            what = (
                f"{dropped} of {points} point(s) dropped (partial write)"
                if dropped < points
                else f"batch of {points} point(s) dropped"
            )
            log.error(
                "output %s: the server rejects writes: %s; %s, and so on until it accepts them again",
                self.name,
                run.message,
                what,
            )
        run.batches += 1
        run.points += dropped

    def _accepted(self) -> None:
        for status, run in self._rejections.items():
            log.info(
                "output %s: the server accepts writes again; while it answered HTTP %d, %d batch(es) were "
                "rejected and %d point(s) dropped",
                self.name,
                status,
                run.batches,
                run.points,
            )
        self._rejections.clear()

    def _backoff(self, why: str, retry_after: float | None) -> float:
        delay = backoff_s(self._attempt, self._rng, self._flush_interval)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._attempt += 1
        self._state.fail("send", f"output {self.name}: {why}; buffering and retrying")
        return delay


def _describe_exc(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
