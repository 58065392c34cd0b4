"""What every source is: something that, asked at time t, returns metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from telegraf_llm_input.metric import Metric


@dataclass(frozen=True)
class GatherContext:
    """What a source knows about the gather it serves."""

    time_ns: int
    """Timestamp for this gather's metrics (wall clock, ns)."""
    deadline_s: float
    """Seconds the source has before its results are discarded."""


@runtime_checkable
class Source(Protocol):
    name: str
    """Stable identity: the `source` tag on `llm_agent`, e.g. `host`, `server:vllm-a`."""

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        """Metrics for this gather. Raise to report a failure; the agent counts and logs it."""
        ...

    async def close(self) -> None:
        ...

    # Optional, looked up by the agent when present:
    # - `missed(ctx, reason) -> Sequence[Metric]`: points standing in for a gather the source could not
    #   finish by the deadline (a server target: `up=0`), so a hung target is never silence.
    # - `stats() -> Mapping[str, int]`: the source's own counters, added to its `llm_agent` point.


@runtime_checkable
class ReportsDown(Protocol):
    """A source whose targets can be down without the source failing (it reports `up=0` instead)."""

    def down_reasons(self) -> Mapping[str, str]:
        """Target name -> why it is down now: the reason its log line gives. Targets that are up are absent."""
        ...


@dataclass
class SourceEnv:
    """Shared things sources may use; built once by the agent and passed to every builder."""

    state_dir: Path | None = None
    """Where a source may keep state across restarts (log positions); None = keep nothing."""
    shared: dict = field(default_factory=dict)
    """Objects several sources share (an HTTP client pool, an NVML handle), keyed by name."""
    discovered_targets: list = field(default_factory=list)
    """TargetConfigs of the servers discovery found so far (no `targets:` in the config); grows as it finds
    more. Sources that follow a server (its process) read it each gather."""


class Processor(Protocol):
    """Sees each gather's metrics after the sources and before the sinks; may add or change some.

    For values that need two sources at once (energy per token needs GPU energy and server tokens).
    """

    def process(self, metrics: list[Metric]) -> list[Metric]:
        ...
