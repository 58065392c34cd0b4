"""The stdout sink's queue, in process: a reader that stops reading, then reads again; a closed pipe."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import sys
import threading

import pytest

from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sinks.stdout import StdoutSink


class StalledStream(io.RawIOBase):
    """A pipe whose reader stopped: each write blocks until `release` is set."""

    def __init__(self):
        self.release = threading.Event()
        self.chunks: list[bytes] = []

    def writable(self):
        return True

    def write(self, data):
        self.release.wait(30)
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self):
        pass


def gather(i: int) -> list[Metric]:
    return [Metric("m", {}, {"seq": i}, 1_000 + i), Metric("m", {"x": "y"}, {"seq": i}, 1_000 + i)]


def test_a_stalled_reader_drops_the_oldest_gathers_and_counts_them():
    stream = StalledStream()
    sink = StdoutSink(stream, max_gathers=5)

    async def go():
        for i in range(20):
            await asyncio.wait_for(sink.write(gather(i)), 2)  # never blocks on the stalled stream
        stream.release.set()
        await sink.close()

    asyncio.run(go())
    written = [int(c.split(b"seq=")[1].split(b"i")[0]) for c in stream.chunks]
    # gather 0 was being written when the reader stalled; the queue then kept the 5 newest.
    assert written == [0, 15, 16, 17, 18, 19]
    assert all(c.count(b"\n") == 2 for c in stream.chunks), "one write per gather, all its lines"
    assert sink.stats()["stdout_dropped_gathers"] == 14
    assert sink.stats()["lines_written"] == 12


def test_a_closed_pipe_is_reported_and_the_next_gather_still_tried():
    class Closed(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            raise BrokenPipeError(32, "Broken pipe")

    sink = StdoutSink(Closed())

    async def go():
        for _ in range(2):
            with pytest.raises(BrokenPipeError):
                await sink.write(gather(0))
        await sink.close()

    asyncio.run(go())
    assert sink.stats()["lines_written"] == 0


def test_a_pipe_with_room_is_written_on_the_loop_and_a_full_one_through_the_writer_thread(monkeypatch):
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, 1031, 4096)  # F_SETPIPE_SZ: one page, so the second write cannot fit
    with os.fdopen(write_end, "w") as out:
        monkeypatch.setattr(sys, "stdout", out)
        sink = StdoutSink()

        async def go():
            await sink.write(gather(0))  # room: written at once, no thread started
            direct = sink._thread is None
            big = [Metric("m", {}, {"pad": "x" * 3000, "seq": i}, 1) for i in range(2)]  # over the pipe's room
            await sink.write(big)  # a slow reader: waits WAIT_S, then goes on
            threaded = sink._thread is not None
            lines = 0
            while lines < 4:  # both gathers' lines arrive, whole
                lines += os.read(read_end, 65536).count(b"\n")
            await sink.close()
            return direct, threaded

        try:
            direct, threaded = asyncio.run(go())
        finally:
            os.close(read_end)
    assert direct and threaded


def test_write_nowait_writes_at_once_while_the_pipe_has_room_else_returns_what_queues_it(monkeypatch):
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, 1031, 4096)  # F_SETPIPE_SZ: one page
    with os.fdopen(write_end, "w") as out:
        monkeypatch.setattr(sys, "stdout", out)
        sink = StdoutSink()

        async def go():
            first = sink.write_nowait(gather(0))
            at_once = os.read(read_end, 65536)
            big = [Metric("m", {}, {"pad": "x" * 3000, "seq": i}, 1) for i in range(2)]
            left = sink.write_nowait(big)
            queued_before = (len(sink._queue), sink._thread)
            await left
            lines = 0
            while lines < 2:
                lines += os.read(read_end, 65536).count(b"\n")
            await sink.close()
            return first, at_once, left is not None, queued_before

        try:
            first, at_once, waited, queued_before = asyncio.run(go())
        finally:
            os.close(read_end)
    assert first is None and at_once.count(b"\n") == 2 and sink.stats()["lines_written"] == 4
    assert waited and queued_before == (0, None)  # nothing queued or started until it is awaited
