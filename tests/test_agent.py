"""Agent.gather_once with small sources: concurrency, deadlines, failures logged once, tags, processors, sinks."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import io
import os
import sys

import pytest

from telegraf_llm_input.agent import FREEZE_AFTER, Agent
from telegraf_llm_input.lineprotocol import encode_batch
from telegraf_llm_input.log import setup_logging
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.schema.agent import AGENT
from telegraf_llm_input.sinks.stdout import StdoutSink
from telegraf_llm_input.sources.base import GatherContext


class Source:
    """Configurable behaviour per call: a value to return, an exception to raise, or a delay first."""

    def __init__(self, name: str, delay: float = 0.0, fail: Exception | None = None):
        self.name = name
        self.delay = delay
        self.fail = fail
        self.calls = 0
        self.running = 0
        self.max_running = 0
        self.closed = False

    async def gather(self, ctx: GatherContext):
        self.calls += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail is not None:
                raise self.fail
            return [Metric(f"m_{self.name}", {"src": self.name}, {"v": self.calls}, ctx.time_ns)]
        finally:
            self.running -= 1

    async def close(self):
        self.closed = True


class ListSink:
    def __init__(self, name="list", fail: Exception | None = None):
        self.name = name
        self.fail = fail
        self.batches: list[list[Metric]] = []

    async def write(self, metrics):
        if self.fail is not None:
            raise self.fail
        self.batches.append(list(metrics))

    def stats(self):
        return {}

    async def close(self):
        return None


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    setup_logging("debug", stream=stream)
    yield lambda: [line for line in stream.getvalue().splitlines() if line]
    setup_logging("info")


def run(coro):
    return asyncio.run(coro)


def by_source(metrics, name):
    (m,) = [m for m in metrics if m.measurement == "llm_agent" and m.tags.get("source") == name]
    return m.fields


def agent_total(metrics):
    (m,) = [m for m in metrics if m.measurement == "llm_agent" and "source" not in m.tags and "output" not in m.tags]
    return m.fields


def test_sources_run_concurrently():
    gate = {"n": 0}

    class Meeting:
        """Each waits until all three are inside gather: only possible if they run at the same time."""

        def __init__(self, name):
            self.name = name

        async def gather(self, ctx):
            gate["n"] += 1
            for _ in range(100):
                if gate["n"] == 3:
                    return [Metric("met", {"who": self.name}, {"v": 1}, ctx.time_ns)]
                await asyncio.sleep(0.01)
            raise RuntimeError("others never arrived")

        async def close(self):
            pass

    agent = Agent([Meeting("a"), Meeting("b"), Meeting("c")], [ListSink()], deadline_s=10)
    metrics = run(agent.gather_once(time_ns=5))
    assert sorted(m.tags["who"] for m in metrics if m.measurement == "met") == ["a", "b", "c"]
    assert all(m.time_ns == 5 for m in metrics)


def test_late_source_is_dropped_counted_and_does_not_hold_back_others(log_lines):
    async def scenario():
        fast, slow = Source("fast"), Source("slow", delay=30)
        agent = Agent([fast, slow], [ListSink()], deadline_s=0.2)
        first = await agent.gather_once()
        second = await agent.gather_once()  # slow is still busy: skipped, not started again
        await agent.close()
        return fast, slow, first, second

    fast, slow, first, second = run(scenario())
    assert [m.measurement for m in first if not m.measurement.startswith("llm_")] == ["m_fast"]
    assert by_source(first, "slow")["errors"] == 1 and by_source(first, "slow")["ok"] == 0
    assert by_source(first, "fast")["errors"] == 0 and by_source(first, "fast")["ok"] == 1
    assert agent_total(first)["source_errors"] == 1
    assert slow.calls == 1 and slow.max_running == 1  # skipped, not stacked
    assert by_source(second, "slow")["errors"] == 2
    assert [m.fields["v"] for m in second if m.measurement == "m_fast"] == [2]
    warnings = [line for line in log_lines() if line.startswith("W! ")]
    assert len(warnings) == 1 and "slow" in warnings[0]


def test_failing_source_warns_once_and_recovers_with_one_info(log_lines):
    source = Source("flaky", fail=ConnectionError("connection refused"))
    agent = Agent([source], [ListSink()], deadline_s=5)

    async def scenario():
        for _ in range(5):
            metrics = await agent.gather_once()
        assert by_source(metrics, "flaky")["errors"] == 5
        source.fail = None
        for _ in range(3):
            metrics = await agent.gather_once()
        return metrics

    metrics = run(scenario())
    assert by_source(metrics, "flaky") == {
        "duration_ms": pytest.approx(by_source(metrics, "flaky")["duration_ms"]),
        "errors": 5,
        "metrics": 1,
        "ok": 1,
    }
    lines = log_lines()
    assert [line for line in lines if line.startswith("W! ")] == ["W! source flaky: connection refused"]
    assert [line for line in lines if line.startswith("I! ")] == ["I! source flaky: recovered"]
    assert not [line for line in lines if line.startswith("E! ")]


def test_global_tags_added_and_own_tags_win():
    agent = Agent([Source("a")], [ListSink()], deadline_s=5, global_tags={"host": "box", "src": "global", "task": "t"})
    metrics = run(agent.gather_once())
    (m,) = [m for m in metrics if m.measurement == "m_a"]
    assert m.tags == {"host": "box", "src": "a", "task": "t"}
    assert all(x.tags["host"] == "box" and x.tags["task"] == "t" for x in metrics)


def test_processors_run_and_a_broken_one_loses_nothing(log_lines):
    class Doubler:
        def process(self, metrics):
            return metrics + [Metric("derived", {}, {"n": len(metrics)}, m.time_ns) for m in metrics[:1]]

    class Broken:
        def process(self, metrics):
            raise ValueError("bad math")

    agent = Agent([Source("a"), Source("b")], [ListSink()], deadline_s=5, processors=[Doubler(), Broken()])
    metrics = run(agent.gather_once())
    names = [m.measurement for m in metrics]
    assert names.count("derived") == 1 and "m_a" in names and "m_b" in names
    assert [m.fields["n"] for m in metrics if m.measurement == "derived"] == [2]
    assert any(line.startswith("W! processor Broken: bad math") for line in log_lines())


def test_failing_sink_does_not_stop_other_sinks(log_lines):
    bad, good = ListSink("bad", fail=BrokenPipeError("pipe closed")), ListSink("good")
    agent = Agent([Source("a")], [bad, good], deadline_s=5)

    async def scenario():
        for _ in range(3):
            await agent.gather_once()

    run(scenario())
    assert len(good.batches) == 3
    assert [line for line in log_lines() if line.startswith("W! ")] == ["W! output bad: pipe closed"]


def test_llm_agent_fields_are_documented_and_count_lines():
    out = io.BytesIO()
    sink = StdoutSink(out)
    agent = Agent([Source("a"), Source("b", fail=RuntimeError("x"))], [sink], deadline_s=5)

    async def scenario():
        await agent.gather_once()
        return await agent.gather_once()

    metrics = run(scenario())
    documented = {f.name for f in AGENT.fields}
    emitted = {k for m in metrics if m.measurement == "llm_agent" for k in m.fields}
    assert emitted <= documented
    output_fields = {f for f in documented if f.startswith("output_")}  # only with a database output
    output_fields.add("models_dropped")  # only with a server target (tests/sources/test_target_faults.py)
    assert documented - output_fields <= emitted  # nothing documented that the agent never emits
    total = agent_total(metrics)
    assert total["gathers"] == 2 and total["sources"] == 2 and total["source_errors"] == 2
    first_gather_lines = 1 + 3  # m_a + llm_agent total + one per source
    assert total["lines_written"] == first_gather_lines
    assert total["metrics_dropped"] == 0
    assert set(AGENT.tags) >= {k for m in metrics if m.measurement == "llm_agent" for k in m.tags}
    written = out.getvalue().decode().split("\n")
    assert len(written) - 1 == 2 * first_gather_lines


def test_close_closes_sources_and_cancels_hung_gathers():
    async def scenario():
        hung = Source("hung", delay=60)
        agent = Agent([hung], [ListSink()], deadline_s=0.05)
        await agent.gather_once()
        await asyncio.wait_for(agent.close(), 5)
        await asyncio.sleep(0)
        return hung

    hung = run(scenario())
    assert hung.closed and hung.running == 0


def test_encoded_agent_metrics_are_valid_line_protocol():
    agent = Agent([Source("a b,c=d")], [ListSink()], deadline_s=5, global_tags={"host": "h"})
    metrics = run(agent.gather_once())
    encoded = encode_batch(metrics)
    assert encoded.dropped == 0 and encoded.lines == len(metrics)
    assert "source=a\\ b\\,c\\=d" in encoded.text


class CountingOutput:
    """A database-like output: reports output_* counters, as the InfluxDB sinks do."""

    def __init__(self, name, written, dropped):
        self.name = name
        self._stats = {"output_written_points": written, "output_dropped_points": dropped}

    async def write(self, metrics):
        return None

    def stats(self):
        return self._stats

    async def close(self):
        return None


def test_each_database_output_gets_its_own_point_and_the_total_sums_them():
    agent = Agent(
        [Source("a")], [CountingOutput("influxdb_v2", 10, 0), CountingOutput("influxdb_v1", 4, 3)], deadline_s=5
    )
    metrics = run(agent.gather_once())
    per = {m.tags["output"]: m.fields for m in metrics if m.measurement == "llm_agent" and "output" in m.tags}
    assert per == {
        "influxdb_v2": {"output_written_points": 10, "output_dropped_points": 0},
        "influxdb_v1": {"output_written_points": 4, "output_dropped_points": 3},
    }
    total = agent_total(metrics)
    assert total["output_written_points"] == 14 and total["output_dropped_points"] == 3
    documented = {f.name for f in AGENT.fields}
    assert {k for fields in per.values() for k in fields} <= documented and "output" in AGENT.tags


def test_problems_are_what_is_failing_now_with_the_logged_line(log_lines):
    flaky, fine = Source("flaky", fail=ConnectionError("connection refused")), Source("fine")
    agent = Agent([flaky, fine], [ListSink("bad", fail=BrokenPipeError("pipe closed"))], deadline_s=5)

    async def scenario():
        await agent.gather_once()
        failing = agent.problems()
        flaky.fail = None
        await agent.gather_once()
        return failing, agent.problems()

    failing, later = run(scenario())
    assert failing == {"flaky": "source flaky: connection refused", "output:bad": "output bad: pipe closed"}
    assert [line[3:] for line in log_lines() if line.startswith("W! ")] == sorted(failing.values(), reverse=True)
    assert later == {"output:bad": "output bad: pipe closed"}


def test_what_the_first_gathers_built_is_frozen_once(monkeypatch):
    """Full collections walked every long-lived object with the interpreter lock held (~20 ms, the probe's clock
    stopped with it): after FREEZE_AFTER gathers what is alive is frozen, once."""
    calls = []
    real_freeze = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: (calls.append(agent.gathers), real_freeze()))
    gc.unfreeze()
    try:
        agent = Agent([Source("a")], [], deadline_s=1.0)

        async def gathers(n):
            frozen = []
            for _ in range(n):
                await agent.gather_once()
                frozen.append(gc.get_freeze_count())
            return frozen

        frozen = asyncio.run(gathers(FREEZE_AFTER + 3))
        assert calls == [FREEZE_AFTER]  # once, not again: later objects stay collectable
        assert frozen[FREEZE_AFTER - 2] == 0 and frozen[FREEZE_AFTER - 1] > 1000
    finally:
        gc.unfreeze()


def plain_line(metric):
    """What the encoder writes of a metric's own measurement, tags, fields and time (no carried line)."""
    return encode_batch([Metric(metric.measurement, dict(metric.tags), dict(metric.fields), metric.time_ns)]).text


def test_agent_lines_are_what_their_fields_encode_to_every_gather():
    """The `llm_agent` lines come from templates made once: they must say what the fields say, whatever the tags
    hold (`%`, escapes), as counters move, sources fail and an output's counters appear beside the others."""
    flaky = Source("50% a b,c=d", fail=RuntimeError("down"))
    agent = Agent(
        [Source("ok"), flaky],
        [StdoutSink(io.BytesIO()), CountingOutput("db%s", 3, 1), ListSink()],
        deadline_s=5,
        global_tags={"host": "h%d x,y=z", "team": "50%"},
    )
    for gather in range(3):
        if gather == 2:
            flaky.fail = None
        metrics = run(agent.gather_once(1_700_000_000_000_000_000 + gather))
        own = [m for m in metrics if m.measurement == "llm_agent"]
        assert len(own) == 4  # the totals, the output, two sources
        for m in own:
            assert encode_batch([m]).text == plain_line(m)
        assert agent_total(metrics)["gathers"] == gather + 1
        assert agent_total(metrics)["source_errors"] == min(gather + 1, 2)
        assert by_source(metrics, "50% a b,c=d")["ok"] == (1 if gather == 2 else 0)
    assert "source=50%\\ a\\ b\\,c\\=d" in encode_batch(own).text


def test_a_copy_of_an_agent_point_is_written_from_its_own_fields():
    """A processor-style copy (`dataclasses.replace`) must not carry the original's line."""
    agent = Agent([], [ListSink()], deadline_s=5, global_tags={"host": "h"})
    (point,) = run(agent.gather_once(1_700_000_000_000_000_000))
    copy = dataclasses.replace(point, tags={"host": "other"})
    assert "host=other" in encode_batch([copy]).text
    assert encode_batch([copy]).text == plain_line(copy)


def test_an_idle_gather_writes_its_one_line_to_stdout():
    out = io.BytesIO()
    agent = Agent([], [StdoutSink(out)], deadline_s=5, global_tags={"host": "h"})
    for gather in range(2):
        run(agent.gather_once(1_700_000_000_000_000_000 + gather))
    first, second = out.getvalue().decode().splitlines()
    assert first.startswith("llm_agent,host=h gather_ms=")
    assert second.endswith(
        ",gathers=2i,sources=0i,source_errors=0i,fields_dropped=0i,lines_written=1i,metrics_dropped=0i,"
        "stdout_dropped_gathers=0i 1700000000000000001"
    )


def test_an_idle_gather_into_a_pipe_with_room_is_done_in_the_call(monkeypatch):
    """`gather_nowait` (the clock's): no source and a sink that takes the lines at once leave nothing to await."""
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as out:
        monkeypatch.setattr(sys, "stdout", out)
        agent = Agent([], [StdoutSink()], deadline_s=5, global_tags={"host": "h"})

        async def scenario():
            return agent.gather_nowait(), os.read(read_end, 65536)

        try:
            left, written = run(scenario())
        finally:
            os.close(read_end)
    assert left is None
    assert written.startswith(b"llm_agent,host=h gather_ms=") and written.count(b"\n") == 1
    assert b",gathers=1i,sources=0i,source_errors=0i,fields_dropped=0i,lines_written=0i," in written


def test_what_gather_nowait_leaves_writes_to_the_sink_that_waits_and_those_after_it(log_lines, monkeypatch):
    """A sink that failed at once is logged and skipped; the first that must wait and every later one get the
    gather when what `gather_nowait` returned is awaited, not before."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the stdout write fails at once (EPIPE)
    with os.fdopen(write_end, "w") as out:
        monkeypatch.setattr(sys, "stdout", out)
        sinks = [StdoutSink(), ListSink("a"), ListSink("b")]
        agent = Agent([], sinks, deadline_s=5)

        async def scenario():
            left = agent.gather_nowait()
            before = [len(s.batches) for s in sinks[1:]]
            assert left is not None
            await left
            return before, [len(s.batches) for s in sinks[1:]]

        assert run(scenario()) == ([0, 0], [1, 1])
    assert list(agent.problems()) == ["output:stdout"]
    assert [m.measurement for m in sinks[2].batches[0]] == ["llm_agent"]


def test_gather_nowait_with_sources_is_the_whole_gather_not_yet_started():
    source = Source("a")
    agent = Agent([source], [ListSink()], deadline_s=5)

    async def scenario():
        gather = agent.gather_nowait()
        calls_before = source.calls
        metrics = await gather
        return calls_before, [m.measurement for m in metrics]

    calls_before, measurements = run(scenario())
    assert calls_before == 0
    assert measurements == ["m_a", "llm_agent", "llm_agent"]


def test_sinks_set_after_construction_get_the_gathers():
    agent = Agent([], [ListSink("first")], deadline_s=5)
    later = ListSink("later")
    agent.sinks = [later]
    run(agent.gather_once())
    assert [m.measurement for m in later.batches[0]] == ["llm_agent"]
