"""What every processor is: a step between the sources and the sinks that sees a whole gather."""

from __future__ import annotations

from typing import Protocol

from telegraf_llm_input.metric import Metric


class Processor(Protocol):
    """Sees each gather's metrics after the sources and before the sinks; may add or change some.

    For values that need two sources at once (energy per token needs GPU energy and server tokens).
    """

    def process(self, metrics: list[Metric]) -> list[Metric]: ...
