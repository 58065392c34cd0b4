"""Sources: each module offers `build(config, env) -> list[Source]`. Add one module, one line.

A source module is imported only when the config can use it (the agent sits beside the model: what a
gather does not use costs neither start-up time nor memory; `python -X importtime` shows it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from telegraf_llm_input.sources import energy, server_type
from telegraf_llm_input.sources.base import Processor, Source, SourceEnv

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config

    Builder = Callable[[Config, SourceEnv], Sequence[Source]]


def lazy(module: str, wanted: Callable[[Config], bool] = lambda config: True) -> Builder:
    """A builder that imports `telegraf_llm_input.sources.<module>` only when `wanted(config)`."""

    def build(config: Config, env: SourceEnv) -> Sequence[Source]:
        if not wanted(config):
            return []
        builder: Builder = importlib.import_module(f"{__name__}.{module}").build
        return builder(config, env)

    build.__qualname__ = f"{module}.build"
    return build


BUILDERS: list[Builder] = [
    lazy("host", lambda config: config.host.enabled),
    lazy("gpu", lambda config: config.gpu.enabled is not False),
    lazy("process"),
    lazy("servers"),
    lazy("probe", lambda config: any(t.probe.enabled for t in config.targets or [])),
    lazy("requestlog", lambda config: bool(config.logs)),
]


def build_sources(config: Config, env: SourceEnv) -> list[Source]:
    sources: list[Source] = []
    for builder in BUILDERS:
        sources.extend(builder(config, env))
    return sources


def build_processors(config: Config, env: SourceEnv) -> list[Processor]:
    """Cross-source steps that need several sources' metrics at once."""
    return [*energy.build(config), *server_type.build(config)]
