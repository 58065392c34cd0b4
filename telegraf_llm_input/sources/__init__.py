"""Sources: each module offers `build(config: Config, env: SourceEnv) -> list[Source]`. Add one module, one line.

The registry (`BUILDERS`) names source modules instead of importing them: `SourceModule` imports its module
(`importlib`) only when the config can use it (the agent sits beside the model: what a gather does not use
costs neither start-up time nor memory; `python -X importtime` shows it). This is the package's one lazy
mechanism; no source is imported inside a function anywhere else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from telegraf_llm_input.config import Config
from telegraf_llm_input.sources.base import Source, SourceEnv

Builder = Callable[[Config, SourceEnv], list[Source]]


def _always(config: Config) -> bool:
    return True


def _server_logs(config: Config) -> bool:
    """A target whose own log may say its requests (Ollama, llama.cpp, or not yet known), or discovery."""
    if config.targets is None:
        return config.discovery.enabled
    return any(
        t.type in ("ollama", "llamacpp", "auto") and (t.log or "").strip().lower() != "none" for t in config.targets
    )


@dataclass(frozen=True)
class SourceModule:
    """`telegraf_llm_input.sources.<module>`, imported and built only when `wanted(config)`."""

    module: str
    wanted: Callable[[Config], bool] = _always

    def __call__(self, config: Config, env: SourceEnv) -> list[Source]:
        if not self.wanted(config):
            return []
        build: Builder = importlib.import_module(f"{__name__}.{self.module}").build
        return build(config, env)


BUILDERS: list[Builder] = [
    SourceModule("host", lambda config: config.host.enabled),
    SourceModule("gpu", lambda config: config.gpu.enabled is not False),
    SourceModule("process"),
    SourceModule("target", lambda config: bool(config.targets)),
    SourceModule("discovery", lambda config: config.targets is None and config.discovery.enabled),
    SourceModule("probe", lambda config: any(t.probe.enabled for t in config.targets or [])),
    SourceModule("requestlog", lambda config: bool(config.logs)),
    SourceModule("serverlog", lambda config: _server_logs(config)),
]
"""In this order (it is the order of each gather's points and `llm_agent` lines)."""


def build_sources(config: Config, env: SourceEnv) -> list[Source]:
    sources: list[Source] = []
    for builder in BUILDERS:
        sources.extend(builder(config, env))
    return sources
