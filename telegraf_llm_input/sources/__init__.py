"""Sources: each module offers `build(config, env) -> list[Source]`. Add one module, one line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from telegraf_llm_input.sources import energy, gpu, host, probe, process, requestlog, server_type, servers
from telegraf_llm_input.sources.base import Processor, Source, SourceEnv

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config

BUILDERS: list[Callable[[Config, SourceEnv], Sequence[Source]]] = [
    host.build,
    gpu.build,
    process.build,
    servers.build,
    probe.build,
    requestlog.build,
]


def build_sources(config: Config, env: SourceEnv) -> list[Source]:
    sources: list[Source] = []
    for builder in BUILDERS:
        sources.extend(builder(config, env))
    return sources


def build_processors(config: Config, env: SourceEnv) -> list[Processor]:
    """Cross-source steps that need several sources' metrics at once."""
    return [*energy.build(config), *server_type.build(config)]
