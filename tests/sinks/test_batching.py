"""Retry and drop rules, against a real InfluxDB where it can produce the answer, else a tiny HTTP server."""

import asyncio
import io

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sinks import build_sinks
from telegraf_llm_input.sinks.batching import backoff_s, parse_retry_after
from telegraf_llm_input.sinks.stdout import StdoutSink
from tests.support.procs import free_port

T0 = 1_700_000_000_000_000_000


def sink_for(cfg, tmp_path):
    return build_sinks(parse_config({"agent": {"state_dir": str(tmp_path)}, "outputs": [cfg]}))[0]


async def wait_for(pred, timeout=15.0):
    for _ in range(int(timeout / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)


def test_retry_after_and_backoff_are_bounded():
    import random

    assert parse_retry_after("3") == 3.0 and parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    rng = random.Random(1)
    delays = [backoff_s(a, rng) for a in range(30)]
    assert all(0.5 <= d <= 60.0 for d in delays) and max(delays) > 10


def test_bad_data_400_is_dropped_once_and_counted(influxdb, tmp_path, caplog):
    influxdb.create_db("conflict")
    influxdb.write("conflict", f"llm_c v=1i {T0}\n")
    sink = sink_for(
        {"type": "influxdb_v1", "url": influxdb.url, "database": "conflict", "flush_interval": "100ms"}, tmp_path
    )

    async def go():
        await sink.write([Metric("llm_c", {}, {"v": 1.5}, T0 + 1)])  # float into an int field: 400
        await wait_for(lambda: sink.stats()["output_dropped_points"] == 1)
        await sink.write([Metric("llm_c", {}, {"v": 2}, T0 + 2)])
        await wait_for(lambda: sink.stats()["output_written_points"] == 1)
        await sink.close()

    asyncio.run(go())
    assert sink.stats()["output_dropped_points"] == 1 and sink.stats()["output_written_points"] == 1
    assert "field type conflict" in caplog.text


def test_429_with_retry_after_is_retried_not_dropped(tmp_path):
    answers = [
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]
    bodies = []

    async def go():
        async def handle(reader, writer):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
            bodies.append(await reader.readexactly(length))
            writer.write(answers[min(len(bodies) - 1, 2)])
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = sink_for({"type": "influxdb_v1", "url": f"http://127.0.0.1:{port}", "flush_interval": "100ms"}, tmp_path)
        await sink.write([Metric("m", {}, {"v": 1}, T0)])
        await wait_for(lambda: sink.stats()["output_written_points"] == 1)
        await sink.close()
        server.close()
        return sink.stats()

    stats = asyncio.run(go())
    assert stats["output_written_points"] == 1 and stats["output_dropped_points"] == 0
    assert stats["output_errors"] == 2
    assert bodies == [f"m v=1i {T0}\n".encode()] * 3


def test_failing_output_never_blocks_gathering_or_other_outputs(tmp_path):
    dead = sink_for(
        {
            "type": "influxdb_v1",
            "url": f"http://127.0.0.1:{free_port()}",
            "flush_interval": "100ms",
            "timeout": "200ms",
        },
        tmp_path,
    )
    stream = io.BytesIO()
    agent = Agent([], [dead, StdoutSink(stream)], deadline_s=1.0)

    async def go():
        for i in range(5):
            await agent.gather_once(time_ns=T0 + i)
            await asyncio.sleep(0.1)
        out = await agent.gather_once(time_ns=T0 + 99)
        await agent.close()
        return out

    last = asyncio.run(go())
    lines = stream.getvalue().decode().splitlines()
    assert len([line for line in lines if line.startswith("llm_agent ")]) == 6
    fields = [m for m in last if m.measurement == "llm_agent" and not m.tags][0].fields
    assert fields["output_errors"] >= 1 and fields["output_written_points"] == 0
    assert fields["output_buffered_points"] >= 5
