"""What every source is: something that, asked at time t, returns metrics."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.lazy import lazy_import
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.nvml import NvmlSession

if TYPE_CHECKING:
    from telegraf_llm_input import http as _http
    from telegraf_llm_input.http import HttpPool
else:
    _http = lazy_import("telegraf_llm_input.http")  # a machine with no model server found never loads it


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

    async def close(self) -> None: ...

    # Optional, looked up by the agent when present:
    # - `missed(ctx, reason) -> Sequence[Metric]`: points standing in for a gather the source could not
    #   finish by the deadline (a server target: `up=0`), so a hung target is never silence.
    # - `stats() -> Mapping[str, int]`: the source's own counters, added to its `llm_agent` point.


@runtime_checkable
class Finds(Protocol):
    """A source that finds more sources while the agent runs (discovery finds model servers).

    Before each gather the agent awaits `find(ctx)` and adds the sources it returns: each is then a source
    of its own (its own `source` tag on `llm_agent`, deadline, stand-in points and log-once state).
    """

    async def find(self, ctx: GatherContext) -> Sequence[Source]:
        """Sources found since the last call (none: an empty list). Raise to report a failure."""
        ...


@runtime_checkable
class ReportsDown(Protocol):
    """A source whose targets can be down without the source failing (it reports `up=0` instead)."""

    def down_reasons(self) -> Mapping[str, str]:
        """Target name -> why it is down now: the reason its log line gives. Targets that are up are absent."""
        ...


@runtime_checkable
class ReportsTraffic(Protocol):
    """A source that counts a target's requests from outside its metrics (its server log), and can say why it
    counts none."""

    def traffic_gaps(self) -> Mapping[str, str]:
        """Target name -> why its requests are not counted now (its log not found, not readable). Targets whose
        log is read are absent."""
        ...


T = TypeVar("T")


@dataclass(frozen=True)
class ProbeSent:
    """One request the probe sent: a server log source leaves it out of user traffic."""

    target: str
    path: str
    started_at: float
    """Unix seconds."""
    ended_at: float | None = None
    """Unix seconds; None while it is in flight."""


class ProbeLedger:
    """What the probes sent lately (bounded), written from the probe threads, read by the server-log source."""

    def __init__(self, maxlen: int = 256):
        self._sent: deque[ProbeSent] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    async def track(self, target: str, path: str, run: Awaitable[T]) -> T:
        """Awaits `run` (one probe request to `path`), recorded as in flight, then as done."""
        sent = ProbeSent(target, path, time.time())
        with self._lock:
            self._sent.append(sent)
        try:
            return await run
        finally:
            with self._lock:
                self._sent.append(ProbeSent(target, path, sent.started_at, time.time()))
                try:
                    self._sent.remove(sent)
                except ValueError:  # pushed out by newer ones
                    pass

    def sent(self, target: str) -> list[ProbeSent]:
        """The target's requests, oldest first (those in flight have no `ended_at`)."""
        with self._lock:
            return [s for s in self._sent if s.target == target]


@dataclass
class SourceEnv:
    """Shared things sources may use; built once by the agent and passed to every builder."""

    state_dir: Path | None = None
    """Where a source may keep state across restarts (log positions); None = keep nothing."""
    http: HttpPool | None = None
    """The agent-wide HTTP pool; `http_pool()` creates it on first use."""
    nvml: NvmlSession | None = None
    """The process-wide NVML session; `nvml_session()` creates it on first use (NVML starts later, when read)."""
    discovered_targets: list[TargetConfig] = field(default_factory=list)
    """The servers discovery found so far (no `targets:` in the config); grows as it finds more. Sources that
    follow a server (its process) read it each gather."""
    probe_ledger: ProbeLedger = field(default_factory=ProbeLedger)
    """The probes' own requests, so no source counts them as user traffic."""
    process_refresh_s: float | None = None
    """How often a server's children are re-read (None: the process source's own pace). `top` reads them every
    frame: a model Ollama just loaded runs in a new child, and a human watches for it."""

    def http_pool(self) -> HttpPool:
        if self.http is None:
            self.http = _http.HttpPool()
        return self.http

    def nvml_session(self, required: bool = False) -> NvmlSession:
        """The one NVML session; `required` (the user asked for GPUs) makes its "unavailable" line a warning and
        is taken from the first caller (the GPU source's builder runs first)."""
        if self.nvml is None:
            self.nvml = NvmlSession(required=required)
        return self.nvml
