"""`llm_probe`: a synthetic streaming request per target, on its own clock, reported at the next gather.

Each enabled target gets a background loop that probes every `probe.every` seconds, one probe
at a time; `gather()` only hands over the results that finished since the last gather, so a slow
or hung model server never delays a gather. A disabled probe builds nothing and sends nothing.
On Ollama the loop looks at `/api/ps` every `probe.ps_every` and a due probe waits for the look that sees a
user's request end (`probe/watch.py`); while the model stays idle, one `model_idle` skip per `every`. At start
the first look comes before the first run (a run with no earlier look to compare with could only skip).

The loop runs on its own thread with its own event loop: on the agent's loop, a chunk's arrival
would be stamped only once the scrapes and parsing queued before it were done (20-30 ms at p99
with 16 targets); on its own loop it waits at most for the GIL, which a busy thread hands over
within the interpreter's switch interval. That interval is 5 ms by default, which was the probe's
p99 error; while a probe runs it is 1 ms (SWITCH_INTERVAL_S), which costs nothing while no other
thread is waiting for the GIL (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from telegraf_llm_input.config import Config
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.probe.measure import ProbeResult
from telegraf_llm_input.probe.runner import Ledger, ProbeOutcome, ProbeRunner
from telegraf_llm_input.sources.base import GatherContext, Source, SourceEnv

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config

log = get_logger("probe")
MAX_PENDING = 32
"""Results kept for the next gather when gathers stop (the oldest are dropped first)."""
SWITCH_INTERVAL_S = 0.001
"""How long a thread waits for the GIL at most before it asks the holder to hand it over (Python's default: 5 ms)."""
SKIP_WHY = {
    "model_idle": "model_idle (nobody is using the model: a probe would keep it loaded)",
    "no_generating_model": "no_generating_model (the loaded models only make embeddings: a chat gets a 400)",
}
"""The log line's words for a skip reason that needs more than its tag value."""


def probe_metric(target: TargetConfig, outcome: ProbeOutcome, time_ns: int) -> Metric:
    result, model = outcome.result, outcome.model
    server_type = target.type if target.type != "auto" else outcome.server_type
    tags = dict(target.tags)
    tags.update(target=target.display_name, server_type=server_type, api=outcome.api)
    if model:
        tags["model"] = model
    if result.skipped:
        tags["skip_reason"] = result.skipped
    if result.error:
        tags["error"] = result.error
    if result.output_tokens_source:
        tags["output_tokens_source"] = result.output_tokens_source
    return Metric("llm_probe", tags, result.fields(), time_ns)


class ProbeSource:
    def __init__(self, target: TargetConfig, runner: ProbeRunner | None = None, ledger: Ledger | None = None):
        self.target = target
        self.name = f"probe:{target.display_name}"
        self._runner = runner or ProbeRunner(target, ledger=ledger)
        self._pending: collections.deque[Metric] = collections.deque(maxlen=MAX_PENDING)
        """Appended by the probe thread, emptied by gather() (deque appends and pops are thread-safe)."""
        self._thread: threading.Thread | None = None
        self._probe_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._state = StateLog(log)
        self.probes = 0

    def start(self) -> None:
        """Start the background probe loop (first probe at once) on its own thread; idempotent."""
        if self._thread is None:
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run_thread, args=(ready,), name=self.name, daemon=True)
            self._thread.start()
            ready.wait()

    def _run_thread(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            self._probe_loop = loop
            self._task = loop.create_task(self._loop(), name=self.name)
            ready.set()
            try:
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            loop.run_until_complete(self._runner.aclose())  # its connections belong to this loop
        finally:
            loop.close()

    async def _loop(self) -> None:
        every, ps_every = self.target.probe.every, self.target.probe.ps_every
        next_start = next_point = time.monotonic()
        while True:
            wall_ns, started = time.time_ns(), time.monotonic()
            due = started >= next_start
            outcome = None
            try:
                if due and self._runner.first_look_due:  # the run waits for the next look: then it can compare
                    due = False
                    await self._runner.look()
                elif due:
                    outcome = await self._runner.run_once()
                else:
                    await self._runner.look()  # Ollama: between runs, so a due run sees what moved since
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not end the loop or reach the agent
                self._state.fail("bug", f"probe {self.target.display_name}: internal error: {type(exc).__name__}")
            idle = outcome is not None and outcome.result.skipped == "model_idle"
            if outcome is not None and (not idle or started >= next_point):  # idle: one point per `every`
                self.probes += 1
                self._pending.append(probe_metric(self.target, outcome, wall_ns))
                self._log(outcome.result)
                next_point = started + every
            if due and not idle:  # idle: still due, probed at the first look that sees the model used
                # watching Ollama, a probe's start sets the pace (not a due time it waited past)
                next_start = started + every if self._runner.watching else max(next_start + every, time.monotonic())
            now = time.monotonic()
            wake = now + ps_every if self._runner.watching else next_start
            await asyncio.sleep(max(0.0, (min(wake, next_start) if next_start > now else wake) - now))

    def _log(self, result: ProbeResult) -> None:
        name = self.target.display_name
        if result.skipped:  # not a failure: the server holds no model the probe may use
            why = SKIP_WHY.get(result.skipped, result.skipped)
            self._state.fail("skip", f"probe {name}: not sent: {why}", level=logging.INFO)
            return
        self._state.ok("skip", f"probe {name}: sent again")
        if result.success:
            self._state.ok("probe", f"probe {name}: ok again")
        else:
            self._state.fail("probe", f"probe {name}: {result.error}: {result.detail}")

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        self.start()
        out = []
        while self._pending:
            out.append(self._pending.popleft())
        return out

    async def close(self) -> None:
        thread, loop, task = self._thread, self._probe_loop, self._task
        if thread is None or loop is None or task is None:
            await self._runner.aclose()
            return
        self._thread = self._probe_loop = self._task = None
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # its loop already ended
            pass
        await asyncio.to_thread(thread.join, 2.0)


def build(config: Config, env: SourceEnv) -> list[Source]:
    return [ProbeSource(t, ledger=env.probe_ledger) for t in (config.targets or []) if t.probe.enabled]
