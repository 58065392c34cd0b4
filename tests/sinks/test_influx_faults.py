"""Database outputs under faults: a full buffer filesystem during an outage, 413, partial writes,
runs of 4xx, and the retry wait after the database is back. Real InfluxDB 1.x where it can produce
the answer; a loopback fake speaking HTTP only for Retry-After."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time

from telegraf_llm_input.config import parse_config
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sinks import build_sinks
from telegraf_llm_input.sinks.batching import BatchingSink
from telegraf_llm_input.sinks.buffer import DiskBuffer
from tests.support.influxdb import InfluxDB1
from tests.support.smallfs import small_tmpfs

T0 = 1_700_000_000_000_000_000


def sink_for(cfg, state_dir=None):
    agent = {"state_dir": str(state_dir)} if state_dir else {}
    return build_sinks(parse_config({"agent": agent, "outputs": [cfg]}))[0]


def gather(i: int, n: int = 40) -> list[Metric]:
    return [Metric("llm_f", {"server": f"s{j}"}, {"seq": i, "pad": "x" * 40}, T0 + i * 1_000_000 + j) for j in range(n)]


async def until(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred():
        await asyncio.sleep(0.05)
    return pred()


def seqs(db, name, measurement="llm_f"):
    res = db.query(f"SELECT seq FROM {measurement}", db=name)["results"][0]
    return [row[1] for row in res["series"][0]["values"]] if "series" in res else []


def messages(caplog, text):
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_outage_on_a_full_filesystem_keeps_the_newest_and_delivers_within_a_flush_interval(tmp_path, caplog):
    db = InfluxDB1(tmp_path / "influx").start()
    db.create_db("full")
    db.stop()
    with small_tmpfs(tmp_path / "fs", "64k") as fs:
        cfg = {
            "type": "influxdb_v1",
            "url": db.url,
            "database": "full",
            "batch_size": 40,
            "flush_interval": "1s",
            "timeout": "300ms",
            "buffer_dir": str(fs / "buf"),
        }
        restarted = {}

        async def go():
            sink = sink_for(cfg)
            for i in range(40):  # ~3.5 KB a gather: the 64 KiB filesystem fills about halfway through
                await sink.write(gather(i))
                await asyncio.sleep(0.25)
            stats = sink.stats()
            assert sink.buffer.full_drops > 0, "the filesystem never filled"
            assert stats["output_dropped_points"] == sink.buffer.dropped_points > 0
            assert stats["output_buffered_points"] + stats["output_dropped_points"] == 40 * 40
            assert not [p for p in (fs / "buf").iterdir() if p.suffix == ".tmp"]
            kept = stats["output_buffered_points"]
            restarted["db"] = InfluxDB1(tmp_path / "influx", http_port=db.http_port).start()
            back = time.monotonic()
            # Ten seconds of failures behind it: an uncapped backoff would now wait up to 32-60 s (plus
            # a flush interval); capped, the next try is at most 1 s away, then the replay (~15 batches).
            assert await until(lambda: sink.stats()["output_written_points"] >= kept, 8.0), (
                f"not delivered {time.monotonic() - back:.1f}s after the database came back"
            )
            await sink.close()
            return kept

        try:
            kept = asyncio.run(go())
            got = seqs(restarted["db"], "full")
            assert len(got) == kept
            assert sorted(set(got)) == list(range(40 - kept // 40, 40)), "the oldest gathers must be the ones dropped"
        finally:
            if "db" in restarted:
                restarted["db"].stop()
    assert len(messages(caplog, "filesystem of the buffer is full")) == 1


def test_413_splits_the_batch_until_the_server_takes_it(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    db = InfluxDB1(tmp_path / "influx", max_body_size=3000).start()  # about 30 of our lines
    try:
        db.create_db("big")
        sink = sink_for(
            {"type": "influxdb_v1", "url": db.url, "database": "big", "batch_size": 795, "flush_interval": "100ms"},
            tmp_path,
        )

        async def go():
            await sink.write([m for i in range(20) for m in gather(i, 40)][:795])
            assert await until(lambda: sink.stats()["output_written_points"] >= 795)
            await sink.write(gather(99, 40))  # later batches go in pieces at once
            assert await until(lambda: sink.stats()["output_written_points"] >= 835)
            await sink.close()

        asyncio.run(go())
        assert sink.stats()["output_dropped_points"] == 0
        assert len(seqs(db, "big")) == 835
        assert len(messages(caplog, "HTTP 413")) == 1
    finally:
        db.stop()


def test_partial_write_counts_only_the_dropped_points_and_the_run_logs_twice(influxdb, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    influxdb.create_db("partial")
    influxdb.write("partial", f"llm_p seq=1i {T0}\n")  # seq is an integer field from now on

    def batch(i, floats):
        return [Metric("llm_p", {"s": str(j)}, {"seq": 1.5 if j < floats else j}, T0 + i * 1000 + j) for j in range(10)]

    sink = sink_for(
        {
            "type": "influxdb_v1",
            "url": influxdb.url,
            "database": "partial",
            "batch_size": 10,
            "flush_interval": "100ms",
        },
        tmp_path,
    )

    async def go():
        for i in range(1, 4):  # three gathers, each with 2 points the server cannot take
            await sink.write(batch(i, 2))
            assert await until(lambda: sink.stats()["output_dropped_points"] >= 2 * i)  # noqa: B023 (awaited here)
        await sink.write(batch(9, 0))
        assert await until(lambda: sink.stats()["output_written_points"] >= 3 * 8 + 10)
        await sink.close()

    asyncio.run(go())
    stats = sink.stats()
    assert stats["output_dropped_points"] == 6 and stats["output_written_points"] == 34
    assert len(seqs(influxdb, "partial", "llm_p")) == 1 + 34
    start, end = messages(caplog, "rejects writes"), messages(caplog, "accepts writes again")
    assert len(start) == 1 and "field type conflict" in start[0] and "2 of 10 point(s) dropped" in start[0]
    assert len(end) == 1 and "HTTP 400" in end[0] and "3 batch(es)" in end[0] and "6 point(s)" in end[0]


def test_a_success_of_another_output_ends_the_retry_wait(tmp_path):
    """A server says Retry-After: 30 once; a second output to it succeeds a moment later, and the
    first one retries then instead of 30 s later."""
    answers = {"n": 0}

    async def go():
        async def handle(reader, writer):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int([x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")][0].split(b":")[1])
            await reader.readexactly(length)
            answers["n"] += 1
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n"
                if answers["n"] == 1
                else b"HTTP/1.1 204 No Content\r\n\r\n"
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        a = sink_for(
            {"type": "influxdb_v1", "url": url, "database": "a", "batch_size": 1, "flush_interval": "60s"},
            tmp_path / "a",
        )
        b = sink_for(
            {"type": "influxdb_v1", "url": url, "database": "b", "batch_size": 1, "flush_interval": "60s"},
            tmp_path / "b",
        )
        await a.write([Metric("m", {}, {"v": 1}, T0)])
        assert await until(lambda: a.stats()["output_errors"] == 1, 5)
        await b.write([Metric("m", {}, {"v": 2}, T0)])
        delivered = await until(lambda: a.stats()["output_written_points"] == 1, 10)
        await a.close()
        await b.close()
        server.close()
        return delivered

    assert asyncio.run(go())


def test_no_room_at_all_drops_the_new_batch_counted_with_one_error_line(tmp_path, caplog):
    """A filesystem full before the first batch (nothing older to remove): each gather's batch is
    dropped and counted, with one `E!` line for the whole episode, and the agent goes on."""
    full = {"on": True}

    def writer(fd, data):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    async def refuse(text):
        raise ConnectionRefusedError("connection refused")

    async def go():
        sink = BatchingSink(
            "influxdb_v1",
            refuse,
            batch_size=40,
            flush_interval=0.2,
            buffer=DiskBuffer(tmp_path / "buf", 10_000_000, write=writer),
        )
        for i in range(5):
            await sink.write(gather(i))
            await asyncio.sleep(0.1)
        assert await until(lambda: sink.stats()["output_dropped_points"] >= 5 * 40 - 40, 5)
        full["on"] = False  # room again: batches are kept again
        await sink.write(gather(5))
        await sink.write(gather(6))
        await asyncio.sleep(0.3)
        stats = sink.stats()
        await sink.close()
        return stats

    stats = asyncio.run(go())
    assert stats["output_buffered_points"] >= 40
    assert not list((tmp_path / "buf").glob("*.tmp"))
    errors = [r for r in caplog.records if "cannot write the buffer" in r.getMessage()]
    assert len(errors) == 1 and errors[0].levelname == "ERROR" and "No space left" in errors[0].getMessage()
