"""The agent run exactly as Telegraf's execd runs it (plugins/inputs/execd, internal/process):

stdin and stdout are pipes; with `signal = "STDIN"` Telegraf writes "\\n" once per interval; on stop it
closes stdin, sends SIGTERM 5 s later and SIGKILL 5 s after that. Logs go to stderr, one line each,
with a level prefix Telegraf understands.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import line_protocol_parser as lpp
import pytest

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.cli import serve
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sources.base import GatherContext
from telegraf_llm_input.trigger import Trigger

TELEGRAF_SIGTERM_AFTER_S = 5.0
LEVEL_PREFIXES = ("E! ", "W! ", "I! ", "D! ")


class Agentd:
    """A running agent with its stdout and stderr read line by line in the background."""

    def __init__(self, tmp_path: Path, *args: str, stdin=subprocess.PIPE):
        config = tmp_path / "config.yaml"
        config.write_text(f"targets: []\nhost:\n  model_dir: {tmp_path}\n")  # no discovery: nothing on 11434
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telegraf_llm_input", "--config", str(config), *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.wait_for(lambda: any("started" in line for line in self.stderr), "start")

    def __enter__(self) -> Agentd:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @staticmethod
    def _pump(stream, sink: list[str]) -> None:
        for raw in stream:
            sink.append(raw.decode("utf-8"))

    def wait_for(self, check, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.proc.poll() is not None and not check():
                raise AssertionError(f"agent exited ({self.proc.returncode}) waiting for {what}: {self.stderr}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}: {self.stderr}")

    def gathers(self) -> int:
        counts = [
            p["fields"]["gathers"]
            for p in self.parsed()
            if p["measurement"] == "llm_agent" and "source" not in p["tags"]
        ]
        return max(counts, default=0)

    def wait_gathers(self, n: int) -> None:
        self.wait_for(lambda: self.gathers() >= n, f"{n} gathers")

    def parsed(self) -> list[dict]:
        return [lpp.parse_line(line.rstrip("\n")) for line in list(self.stdout)]

    def finish(self, timeout: float = 15.0) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for t in self._threads:
            t.join(5)
        return code

    def assert_clean_output(self) -> None:
        assert all(line.endswith("\n") for line in self.stdout)
        for line in self.stdout:
            lpp.parse_line(line.rstrip("\n"))  # raises on any line Telegraf could not parse
        bad = [line for line in self.stderr if not line.startswith(LEVEL_PREFIXES)]
        assert bad == [], bad


def test_one_gather_per_newline_then_exit_on_eof(tmp_path):
    with Agentd(tmp_path, "--signal", "stdin") as agent:
        time.sleep(0.3)
        assert agent.gathers() == 0  # nothing until Telegraf asks
        for n in range(1, 4):
            agent.proc.stdin.write(b"\n")
            agent.proc.stdin.flush()
            agent.wait_gathers(n)
            time.sleep(0.2)
            assert agent.gathers() == n
        # A burst arriving at once is at most one gather per newline, possibly fewer (coalesced).
        agent.proc.stdin.write(b"\n\n\n")
        agent.proc.stdin.flush()
        agent.wait_gathers(4)
        time.sleep(0.5)
        assert 4 <= agent.gathers() <= 6
        closed = time.monotonic()
        agent.proc.stdin.close()  # Telegraf stopping
        code = agent.finish(timeout=TELEGRAF_SIGTERM_AFTER_S + 10)
        elapsed = time.monotonic() - closed
    print(f"exit after stdin EOF: {elapsed:.3f}s")
    assert code == 0
    assert elapsed < TELEGRAF_SIGTERM_AFTER_S, "Telegraf would have had to SIGTERM us"
    agent.assert_clean_output()
    names = {p["measurement"] for p in agent.parsed()}
    assert {"llm_host", "llm_agent"} <= names
    assert any("stopped" in line for line in agent.stderr)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_exit_zero(tmp_path, sig):
    with Agentd(tmp_path, "--signal", "stdin") as agent:
        agent.proc.stdin.write(b"\n")
        agent.proc.stdin.flush()
        agent.wait_gathers(1)
        agent.proc.send_signal(sig)
        assert agent.finish() == 0
    agent.assert_clean_output()


@pytest.mark.parametrize(
    "args,stdin,stop,gathers",
    [
        # SIGHUP and SIGUSR1 trigger a gather; stdin EOF stops.
        (["--signal", "stdin"], subprocess.PIPE, "eof", signal.SIGHUP),
        (["--signal", "stdin"], subprocess.PIPE, "eof", signal.SIGUSR1),
        # --signal none gathers on its own; the EOF of a pipe on stdin stops it.
        (["--signal", "none", "--interval", "1s"], subprocess.PIPE, "eof", None),
        # Under systemd stdin is /dev/null: its immediate EOF must not stop the agent.
        (["--signal", "none", "--interval", "1s"], subprocess.DEVNULL, signal.SIGTERM, None),
    ],
    ids=["sighup", "sigusr1", "interval-pipe-eof", "interval-devnull"],
)
def test_other_triggers_and_stops(tmp_path, args, stdin, stop, gathers):
    with Agentd(tmp_path, *args, stdin=stdin) as agent:
        for n in (1, 2):
            if gathers is not None:
                agent.proc.send_signal(gathers)
            agent.wait_gathers(n)
        assert agent.proc.poll() is None
        if stop == "eof":
            agent.proc.stdin.close()
        else:
            agent.proc.send_signal(stop)
        assert agent.finish() == 0
    agent.assert_clean_output()


# --- coalescing, in process: a gather made slow by a source --------------------------------------------------


class SlowSource:
    """Each gather lasts until the test sets `release` (or `seconds` pass)."""

    name = "slow"

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def gather(self, ctx: GatherContext):
        self.calls += 1
        self.started.set()
        try:
            await asyncio.wait_for(self.release.wait(), self.seconds)
        except asyncio.TimeoutError:
            pass
        return [Metric("slow", {}, {"n": self.calls}, ctx.time_ns)]

    async def close(self) -> None:
        return None


class ListSink:
    name = "list"

    def __init__(self):
        self.batches: list[list[Metric]] = []

    async def write(self, metrics):
        self.batches.append(list(metrics))

    def stats(self):
        return {}

    async def close(self):
        return None


def test_rings_during_a_gather_coalesce_into_one_more_gather():
    async def scenario():
        source, sink = SlowSource(30), ListSink()
        agent = Agent([source], [sink], deadline_s=60.0)
        trigger = Trigger(asyncio.get_running_loop())
        served = asyncio.ensure_future(serve(agent, trigger, interval=None))
        trigger.ring()
        await asyncio.wait_for(source.started.wait(), 5)
        for _ in range(5):  # five newlines while the first gather runs
            trigger.ring()
            await asyncio.sleep(0.01)
        source.release.set()  # from now on gathers are instant
        for _ in range(200):
            if len(sink.batches) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # room for a backlog to show, if there were one
        trigger.stop()
        await asyncio.wait_for(served, 5)
        return source.calls, len(sink.batches)

    calls, batches = asyncio.run(scenario())
    assert (calls, batches) == (2, 2)


def test_stop_during_a_slow_gather_cancels_it_promptly():
    async def scenario():
        source = SlowSource(60)
        agent = Agent([source], [ListSink()], deadline_s=120.0)
        trigger = Trigger(asyncio.get_running_loop())
        served = asyncio.ensure_future(serve(agent, trigger, interval=None))
        trigger.ring()
        await asyncio.wait_for(source.started.wait(), 5)
        trigger.stop()
        await asyncio.wait_for(served, 10)  # would take 60 s if the gather were awaited
        await agent.close()
        return served.done()

    assert asyncio.run(scenario())


def test_a_gather_ending_within_the_grace_after_a_stop_is_written():
    """The gather runs in the serving task itself: a stop lets it finish and write; serve then returns, and the task
    is left as it was (not cancelled; on 3.11+ no cancel request left over for an asyncio.timeout to misread)."""

    async def scenario():
        source, sink = SlowSource(0.1), ListSink()
        agent = Agent([source], [sink], deadline_s=60.0)
        trigger = Trigger(asyncio.get_running_loop())

        async def serving():
            await serve(agent, trigger, interval=None)
            task = asyncio.current_task()
            return task.cancelling() if hasattr(task, "cancelling") else 0

        served = asyncio.ensure_future(serving())
        trigger.ring()
        await asyncio.wait_for(source.started.wait(), 5)
        trigger.stop()
        left = await asyncio.wait_for(served, 5)
        return left, [m.measurement for batch in sink.batches for m in batch if m.measurement == "slow"]

    assert asyncio.run(scenario()) == (0, ["slow"])


class StackSink(ListSink):
    """Also records, for each write, the task asyncio saw current and whether `serve`'s frame was on the stack."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[asyncio.Task | None, bool]] = []

    async def write(self, metrics):
        frames = [f.f_code.co_name for f in _stack()]
        self.seen.append((asyncio.current_task(), "serve" in frames))
        await super().write(metrics)


def _stack():
    frame = sys._getframe(1)
    while frame is not None:
        yield frame
        frame = frame.f_back


def _serve_on_the_clock(agent, sink, gathers):
    async def scenario():
        trigger = Trigger(asyncio.get_running_loop())
        served = asyncio.ensure_future(serve(agent, trigger, interval=0.05))
        for _ in range(400):
            if len(sink.batches) >= gathers:
                break
            await asyncio.sleep(0.01)
        trigger.stop()
        await asyncio.wait_for(served, 5)
        await agent.close()
        return served

    return asyncio.run(scenario())


def test_an_idle_gather_on_the_clock_is_made_in_the_clock_callback_as_the_serving_task():
    """No source: nothing to wait for, so the serving coroutine is not resumed for it (not on the stack), yet
    asyncio sees the serving task current (what asyncio.timeout and current_task() need)."""
    sink = StackSink()
    served = _serve_on_the_clock(Agent([], [sink], deadline_s=1.0), sink, 3)
    assert len(sink.seen) >= 3
    assert sink.seen[:3] == [(served, False)] * 3
    gathers = [m.fields["gathers"] for batch in sink.batches for m in batch if m.measurement == "llm_agent"]
    assert gathers[:3] == [1, 2, 3]


class AtOnceSink(ListSink):
    """A sink that takes a gather at once (`write_nowait`, as stdout with room, the database outputs): records the
    task asyncio saw current and whether any coroutine was on the stack."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[asyncio.Task | None, bool]] = []

    def write_nowait(self, metrics):
        coroutines = any(f.f_code.co_flags & inspect.CO_COROUTINE for f in _stack())
        self.seen.append((asyncio.current_task(), coroutines))
        self.batches.append(list(metrics))


def test_an_idle_gather_on_the_clock_into_sinks_that_take_it_at_once_is_plain_calls():
    """Nothing to wait for and nothing that waits: no coroutine is made or stepped for it, no task resumed."""
    sink = AtOnceSink()
    _serve_on_the_clock(Agent([], [sink], deadline_s=1.0), sink, 3)
    assert sink.seen[:3] == [(None, False)] * 3
    gathers = [m.fields["gathers"] for batch in sink.batches for m in batch if m.measurement == "llm_agent"]
    assert gathers[:3] == [1, 2, 3]


def test_a_gather_on_the_clock_that_waits_is_finished_by_the_serving_task():
    source, sink = SlowSource(60), StackSink()
    source.release.set()  # each gather awaits its source (a task of its own), briefly
    served = _serve_on_the_clock(Agent([source], [sink], deadline_s=1.0), sink, 3)
    assert sink.seen[:3] == [(served, True)] * 3  # handed over: finished in `serve`
    assert [m.fields["n"] for batch in sink.batches[:3] for m in batch if m.measurement == "slow"] == [1, 2, 3]


def test_stop_during_a_slow_gather_on_the_clock_cancels_it_promptly():
    async def scenario():
        source = SlowSource(60)
        agent = Agent([source], [ListSink()], deadline_s=120.0)
        trigger = Trigger(asyncio.get_running_loop())
        served = asyncio.ensure_future(serve(agent, trigger, interval=0.05))
        await asyncio.wait_for(source.started.wait(), 5)
        await asyncio.sleep(0.2)  # ticks meanwhile find the serving task busy: skipped, no second gather
        trigger.stop()
        await asyncio.wait_for(served, 10)  # would take 60 s if the gather were awaited
        await agent.close()
        return source.calls

    assert asyncio.run(scenario()) == 1


MISBEHAVING = '''
import asyncio, sys, time
from telegraf_llm_input import cli, sources

class Stuck:
    """A blocking call that never returns (a hung NFS stat) in a worker thread."""
    name = "stuck"
    async def gather(self, ctx):
        await asyncio.to_thread(time.sleep, 3600)
    async def close(self):
        pass

class LateFailure:
    """Fails only after the deadline, when nobody awaits it any more."""
    name = "late"
    async def gather(self, ctx):
        await asyncio.sleep(0.6)
        raise RuntimeError("too late")
    async def close(self):
        pass

sources.BUILDERS.append(lambda config, env: [Stuck(), LateFailure()])
sys.exit(cli.main(sys.argv[1:]))
'''


def test_stuck_thread_and_late_failure_do_not_hold_exit_or_print_tracebacks(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("targets: []\nagent:\n  gather_timeout: 300ms\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", MISBEHAVING, "--signal", "stdin", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        time.sleep(1.5)  # the gather is over; the late task fails after it
        closed = time.monotonic()
        proc.stdin.close()
        code = proc.wait(TELEGRAF_SIGTERM_AFTER_S + 10)
        elapsed = time.monotonic() - closed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"exit after stdin EOF with a stuck thread: {elapsed:.3f}s")
    stderr = proc.stderr.read().decode().splitlines()
    stdout = proc.stdout.read().decode().splitlines()
    assert code == 0, stderr
    assert elapsed < TELEGRAF_SIGTERM_AFTER_S
    assert [line for line in stderr if not line.startswith(LEVEL_PREFIXES)] == []
    assert any("stuck" in line for line in stderr if line.startswith("W! "))
    assert any(lpp.parse_line(line)["measurement"] == "llm_host" for line in stdout)
