"""What every sink is: something that takes each gather's metrics somewhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from telegraf_llm_input.metric import Metric


class Sink(Protocol):
    name: str

    async def write(self, metrics: Sequence[Metric]) -> None:
        """Take one gather's metrics. Must not block the gather loop for long: queue, don't wait."""
        ...

    def stats(self) -> Mapping[str, int]:
        """Cumulative counters reported as `llm_agent` fields (e.g. `lines_written`): ints, as the schema types
        them (the agent's own points skip the conformer)."""
        ...

    async def close(self) -> None:
        """Flush what can be flushed quickly; called once at shutdown."""
        ...
