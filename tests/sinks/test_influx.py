"""influxdb_v1 against a real InfluxDB 1.6.7, influxdb_v2 against a real VictoriaMetrics, outages included."""

import asyncio
import time

import pytest

from telegraf_llm_input.config import parse_config
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sinks import build_sinks
from tests.support.procs import wait_until
from tests.support.victoria import VictoriaMetrics, victoria_binary

T0 = 1_700_000_000_000_000_000


def points(n, start=0, measurement="llm_test"):
    return [
        Metric(measurement, {"server": "a b"}, {"seq": i, "ok": True}, T0 + i * 1_000_000_000)
        for i in range(start, start + n)
    ]


def sink_for(cfg, state_dir=None):
    agent = {"state_dir": str(state_dir)} if state_dir else {}
    return build_sinks(parse_config({"agent": agent, "outputs": [cfg]}))[0]


async def drain(sink, until, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until():
        await asyncio.sleep(0.1)


def v1_seqs(influxdb, db):
    res = influxdb.query("SELECT seq FROM llm_test", db=db)["results"][0]
    if "series" not in res:
        return []
    return [(row[0], row[1]) for row in res["series"][0]["values"]]


def test_v1_writes_batches_with_original_timestamps(influxdb, tmp_path):
    influxdb.create_db("v1ok")
    sink = sink_for(
        {"type": "influxdb_v1", "url": influxdb.url, "database": "v1ok", "batch_size": 4, "flush_interval": "100ms"},
        tmp_path,
    )

    async def go():
        await sink.write(points(5))
        await sink.write(points(5, 5))
        await drain(sink, lambda: sink.stats()["output_written_points"] >= 10)
        await sink.close()

    asyncio.run(go())
    assert v1_seqs(influxdb, "v1ok") == [(T0 + i * 1_000_000_000, i) for i in range(10)]
    assert sink.stats()["output_buffered_points"] == 0


def test_v1_missing_database_is_one_clear_error_and_dropped(influxdb, tmp_path, caplog):
    sink = sink_for(
        {
            "type": "influxdb_v1",
            "url": influxdb.url,
            "database": "nope",
            "flush_interval": "100ms",
            "username": "u",
            "password": "s3cret-pw",
        },
        tmp_path,
    )

    async def go():
        for i in range(3):
            await sink.write(points(2, i * 2))
            await asyncio.sleep(0.15)
        await drain(sink, lambda: sink.stats()["output_dropped_points"] >= 6, 10)
        await sink.close()

    asyncio.run(go())
    stats = sink.stats()
    assert stats["output_dropped_points"] == 6 and stats["output_written_points"] == 0
    errors = [r.getMessage() for r in caplog.records if "does not exist" in r.getMessage()]
    assert len(errors) == 1 and 'CREATE DATABASE "nope"' in errors[0]
    assert "s3cret-pw" not in caplog.text


def test_v1_outage_restart_and_replay_loses_nothing(influxdb, tmp_path):
    """Database down: batches go to disk; the sink is dropped without close (a SIGKILL) and a new one
    replays the backlog once the database answers."""
    from tests.support.influxdb import InfluxDB1

    db = InfluxDB1(tmp_path / "own").start()
    db.create_db("outage")
    url = db.url
    cfg = {
        "type": "influxdb_v1",
        "url": url,
        "database": "outage",
        "batch_size": 3,
        "flush_interval": "100ms",
        "timeout": "500ms",
    }
    db.stop()

    async def first_run():
        sink = sink_for(cfg, tmp_path / "state")
        for i in range(4):
            await sink.write(points(2, i * 2))
            await asyncio.sleep(0.12)
        await drain(
            sink, lambda: sink.stats()["output_errors"] >= 1 and sink.stats()["output_buffered_points"] == 8, 10
        )
        assert sink.stats()["output_buffered_points"] == 8
        sink._task.cancel()  # killed: no close(), nothing flushed

    asyncio.run(first_run())
    files = list((tmp_path / "state" / "buffer" / "influxdb_v1").glob("*.lpb"))
    assert files, "the backlog must be on disk"

    db2 = InfluxDB1(tmp_path / "own", http_port=db.http_port).start()
    try:

        async def second_run():
            sink = sink_for(cfg, tmp_path / "state")
            assert sink.stats()["output_buffered_points"] == 8
            await sink.write(points(2, 8))
            await drain(sink, lambda: sink.stats()["output_buffered_points"] == 0)
            await sink.close()

        asyncio.run(second_run())
        seqs = v1_seqs(db2, "outage")
        assert sorted(set(seqs)) == [(T0 + i * 1_000_000_000, i) for i in range(10)]
    finally:
        db2.stop()


@pytest.fixture(scope="module")
def victoria(tmp_path_factory):
    if victoria_binary() is None:
        pytest.skip("victoria-metrics not installed: apt-get install victoria-metrics (scripts/test.sh does)")
    vm = VictoriaMetrics(tmp_path_factory.mktemp("vm")).start()
    yield vm
    vm.stop()


def test_v2_writes_to_victoriametrics(victoria, tmp_path, caplog):
    sink = sink_for(
        {
            "type": "influxdb_v2",
            "url": victoria.url,
            "org": "o",
            "bucket": "b",
            "token": "tok-s3cret",
            "batch_size": 3,
            "flush_interval": "100ms",
        },
        tmp_path,
    )

    async def go():
        await sink.write(points(7))
        await drain(sink, lambda: sink.stats()["output_written_points"] >= 7)
        await sink.close()

    asyncio.run(go())
    got = {}
    wait_until(
        lambda: bool(
            got.update({s["metric"]["__name__"]: s for s in victoria.export('{__name__=~"llm_test_.*"}')})
            or len(got.get("llm_test_seq", {}).get("values", [])) == 7
        ),
        15,
        "VictoriaMetrics export",
    )
    seq = got["llm_test_seq"]
    assert seq["metric"]["server"] == "a b"
    assert seq["values"] == list(range(7))
    assert seq["timestamps"] == [(T0 + i * 1_000_000_000) // 1_000_000 for i in range(7)]
    assert "tok-s3cret" not in caplog.text


def test_v2_token_with_surrounding_whitespace_still_writes(victoria, tmp_path, caplog):
    """A token from an environment variable or file that ends in a newline made every write fail (an HTTP header
    value has no newline); the whitespace around it is no part of it."""
    sink = sink_for(
        {"type": "influxdb_v2", "url": victoria.url, "org": "o", "bucket": "b", "token": " tok-s3cret\n",
         "flush_interval": "100ms"},
        tmp_path,
    )  # fmt: skip

    async def go():
        await sink.write(points(3, measurement="llm_padded"))
        await drain(sink, lambda: sink.stats()["output_written_points"] >= 3, 10)
        await sink.close()

    asyncio.run(go())
    assert sink.stats()["output_written_points"] == 3 and sink.stats()["output_errors"] == 0
    assert "tok-s3cret" not in caplog.text


def test_v2_without_org_writes_to_victoriametrics(victoria, tmp_path):
    """No `org:` passed check-config and then never wrote (influxdb-client refuses a write without one)."""
    config = parse_config({"outputs": [{"type": "influxdb_v2", "url": victoria.url, "bucket": "b"}]})
    assert config.outputs[0].org == "-"
    sink = sink_for({"type": "influxdb_v2", "url": victoria.url, "bucket": "b", "flush_interval": "100ms"}, tmp_path)

    async def go():
        await sink.write(points(4, measurement="llm_noorg"))
        await drain(sink, lambda: sink.stats()["output_written_points"] >= 4)
        await sink.close()

    asyncio.run(go())
    assert sink.stats()["output_written_points"] == 4 and sink.stats()["output_errors"] == 0
    got: list = []
    wait_until(lambda: bool(got.extend(victoria.export("llm_noorg_seq")) or got), 15, "VictoriaMetrics export")
    assert got[0]["values"] == [0, 1, 2, 3]


def test_v2_connection_refused_buffers_then_gives_up_nothing(tmp_path):
    from tests.support.procs import free_port

    sink = sink_for(
        {
            "type": "influxdb_v2",
            "url": f"http://127.0.0.1:{free_port()}",
            "org": "o",
            "bucket": "b",
            "token": "t",
            "flush_interval": "100ms",
            "timeout": "300ms",
        },
        tmp_path,
    )

    async def go():
        await sink.write(points(3))
        await drain(sink, lambda: sink.stats()["output_errors"] >= 1, 10)
        await sink.close()

    asyncio.run(go())
    assert sink.stats()["output_buffered_points"] == 3
    assert sink.stats()["output_written_points"] == 0
