"""Sources: each module offers `build(config, env) -> list[Source]`. Add one module, one line."""

from __future__ import annotations

from telegraf_llm_input.sources import host, probe, servers
from telegraf_llm_input.sources.base import Processor, Source, SourceEnv

BUILDERS = [
    host.build,
    servers.build,
    probe.build,
]


def build_sources(config, env: SourceEnv) -> list[Source]:
    sources: list[Source] = []
    for builder in BUILDERS:
        sources.extend(builder(config, env))
    return sources


def build_processors(config, env: SourceEnv) -> list[Processor]:
    """Cross-source steps (e.g. energy per token); empty until a source needs one."""
    return []
