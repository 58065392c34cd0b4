"""A database output: queue each gather, flush batches in the background, buffer through outages.

Every flushed batch goes to the buffer first (disk when a directory is known), and a background
task drains the buffer oldest-first. So a batch is on disk before anything is sent: a SIGKILL
at any moment loses nothing, and a batch that was sent but not yet removed is sent again after a
restart (at-least-once, never exactly-once).

Transient failures (connect errors, timeouts, 429, 5xx) keep the batch and back off exponentially
with jitter, honouring `Retry-After`. Other 4xx mean the data or the request is wrong: logged once
with the server's message, the batch dropped and counted, never retried forever.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping, Sequence

from telegraf_llm_input.lineprotocol import encode_batch
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


def backoff_s(attempt: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [min, min * 2**attempt], capped."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_MIN_S * (2 ** min(attempt, 16)))
    return rng.uniform(BACKOFF_MIN_S, max(BACKOFF_MIN_S, ceiling))


@dataclass
class Counters:
    written: int = 0
    dropped: int = 0
    errors: int = 0


class BatchingSink:
    def __init__(self, name: str, send: Send, *, batch_size: int, flush_interval: float,
                 buffer: DiskBuffer | MemoryBuffer, describe_error: Callable[[WriteError], str] | None = None,
                 close: Callable[[], Awaitable[None]] | None = None):
        self.name = name
        self._send = send
        self._batch_size = max(1, batch_size)
        self._flush_interval = flush_interval
        self.buffer = buffer
        self._describe = describe_error or (lambda e: str(e))
        self._close_transport = close
        self._pending: list[str] = []
        self._pending_points = 0
        self._counters = Counters()
        self._state = StateLog(log)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._rng = random.Random()
        self._attempt = 0
        self._bad_statuses: set[int] = set()

    # --- the agent side ---------------------------------------------------------------------
    async def write(self, metrics: Sequence[Metric]) -> None:
        batch = encode_batch(metrics)
        if batch.text:
            self._pending.append(batch.text)
            self._pending_points += batch.lines
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        if self._attempt:
            self._persist_pending()  # in an outage every gather goes to disk at once: a kill loses nothing
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
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._persist_pending()
        # The database looked fine: send what is left within a short budget; the rest (or all of it
        # in an outage) stays in the buffer for the next start.
        deadline = time.monotonic() + CLOSE_SEND_S
        while self._attempt == 0 and (batch := self.buffer.peek()) is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                if await asyncio.wait_for(self._send_one(batch), left) is not None:
                    break
            except Exception:
                break
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
            chunk = lines[i:i + self._batch_size]
            try:
                self.buffer.push("".join(chunk), len(chunk))
            except OSError as exc:
                self._counters.errors += 1
                self._counters.dropped += len(chunk)
                self._state.fail("buffer", f"output {self.name}: cannot write the buffer: {exc}; points dropped")

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
            delay = await self._send_one(batch)
            if delay is not None:
                await asyncio.sleep(delay)
                return
            if self._pending_points >= self._batch_size:
                self._persist_pending()

    async def _send_one(self, batch) -> float | None:
        """Send the oldest batch. None when it left the buffer; else the seconds to back off."""
        try:
            await self._send(batch.text)
        except WriteError as exc:
            self._counters.errors += 1
            if exc.transient:
                return self._backoff(self._describe(exc), exc.retry_after)
            self.buffer.pop(batch)
            self._counters.dropped += batch.points
            if exc.status not in self._bad_statuses:
                self._bad_statuses.add(exc.status)
                log.error("output %s: the server rejected a batch of %d point(s), dropped: %s",
                          self.name, batch.points, self._describe(exc))
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._counters.errors += 1
            return self._backoff(_describe_exc(exc), None)
        self.buffer.pop(batch)
        self._counters.written += batch.points
        if self._attempt:
            self._state.ok("send", f"output {self.name}: writing again; backlog {self.buffer.points} point(s)")
        self._attempt = 0
        return None

    def _backoff(self, why: str, retry_after: float | None) -> float:
        delay = backoff_s(self._attempt, self._rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._attempt += 1
        self._state.fail("send", f"output {self.name}: {why}; buffering and retrying")
        return delay


def _describe_exc(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
