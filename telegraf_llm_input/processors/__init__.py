"""Processors: cross-source steps over each gather's metrics (sources -> processors -> sinks).

Each module offers `build(config: Config) -> list[Processor]` (none when the config cannot use it).
Add one module, one line. They are small and pure Python, so they are imported at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from telegraf_llm_input.config import Config
from telegraf_llm_input.processors import energy, server_type
from telegraf_llm_input.processors.base import Processor

BUILDERS: list[Callable[[Config], Sequence[Processor]]] = [energy.build, server_type.build]


def build_processors(config: Config) -> list[Processor]:
    processors: list[Processor] = []
    for build in BUILDERS:
        processors.extend(build(config))
    return processors
