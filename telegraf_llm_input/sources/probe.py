"""`llm_probe`: a synthetic streaming request per target, on its own clock, reported at the next gather.

Each enabled target gets a background task that probes every `probe.every` seconds, one probe
at a time; `gather()` only hands over the results that finished since the last gather, so a slow
or hung model server never delays a gather. A disabled probe builds nothing and sends nothing.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.probe.measure import ProbeResult
from telegraf_llm_input.probe.runner import SERVER_TYPE_BY_API, ProbeRunner
from telegraf_llm_input.sources.base import GatherContext, SourceEnv
from telegraf_llm_input.targets import TargetConfig

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config

log = get_logger("probe")
MAX_PENDING = 32
"""Results kept for the next gather when gathers stop (the oldest are dropped first)."""


def probe_metric(target: TargetConfig, result: ProbeResult, model: str | None, time_ns: int) -> Metric:
    probe = target.probe
    server_type = target.type if target.type != "auto" else SERVER_TYPE_BY_API.get(probe.api, "openai")
    tags = dict(target.tags)
    tags.update(target=target.display_name, server_type=server_type, api=probe.api)
    if model:
        tags["model"] = model
    if result.error:
        tags["error"] = result.error
    if result.output_tokens_source:
        tags["output_tokens_source"] = result.output_tokens_source
    return Metric("llm_probe", tags, result.fields(), time_ns)


class ProbeSource:
    def __init__(self, target: TargetConfig, runner: ProbeRunner | None = None):
        self.target = target
        self.name = f"probe:{target.display_name}"
        self._runner = runner or ProbeRunner(target)
        self._pending: collections.deque[Metric] = collections.deque(maxlen=MAX_PENDING)
        self._task: asyncio.Task | None = None
        self._state = StateLog(log)
        self.probes = 0

    def start(self) -> None:
        """Start the background probe loop (first probe at once); idempotent. Needs a running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def _loop(self) -> None:
        every = self.target.probe.every
        next_start = time.monotonic()
        while True:
            wall_ns = time.time_ns()
            try:
                outcome = await self._runner.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not end the loop or reach the agent
                self._state.fail("bug", f"probe {self.target.display_name}: internal error: {type(exc).__name__}")
            else:
                self.probes += 1
                result = outcome.result
                self._pending.append(probe_metric(self.target, result, outcome.model, wall_ns))
                if result.success:
                    self._state.ok("probe", f"probe {self.target.display_name}: ok again")
                else:
                    self._state.fail("probe", f"probe {self.target.display_name}: {result.error}: {result.detail}")
            next_start = max(next_start + every, time.monotonic())
            await asyncio.sleep(next_start - time.monotonic())

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        self.start()
        out = list(self._pending)
        self._pending.clear()
        return out

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._runner.aclose()


def build(config: Config, env: SourceEnv) -> list[ProbeSource]:
    return [ProbeSource(t) for t in (config.targets or []) if t.probe.enabled]
