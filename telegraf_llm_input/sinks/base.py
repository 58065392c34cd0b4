"""What every sink is: something that takes each gather's metrics somewhere."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from telegraf_llm_input.metric import Metric


class Sink(Protocol):
    name: str

    async def write(self, metrics: Sequence[Metric]) -> None:
        """Take one gather's metrics. Must not block the gather loop for long: queue, don't wait."""
        ...

    def stats(self) -> Mapping[str, int]:
        """Cumulative counters reported as `llm_agent` fields (e.g. `lines_written`): ints, as the schema types
        them (the agent's own points skip the conformer); the same names in the same order every call (the agent
        makes their line's template once)."""
        ...

    async def close(self) -> None:
        """Flush what can be flushed quickly; called once at shutdown."""
        ...


@runtime_checkable
class WritesNowait(Protocol):
    """A sink that can take a gather without a coroutine (an idle agent's interval is then plain calls)."""

    def write_nowait(self, metrics: Sequence[Metric]) -> Awaitable[None] | None:
        """`write`, done as far as it goes without waiting: None when that is all of it, else what finishes it (to
        be awaited before the next gather is given)."""
        ...
