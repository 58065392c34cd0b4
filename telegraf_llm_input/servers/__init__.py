"""Server adapters, one small module per server type, and `type: auto` detection.

A module gives `TYPE`, `NAME`, `make(target) -> Adapter` (the contract is `servers/base.py`) and, when
the server can be recognised from what it answers, `DETECT`: declarative `Rule`s. Adding a server: one
module, and its entry in the registry (`telegraf_llm_input/servertypes.py`: type, module, default port;
its place there is its place in the detection order).

The registry holds module names, not modules: a module is imported (`importlib`) the first time its
type is used, so an agent that scrapes one vLLM never loads the llama.cpp adapter, and one whose
discovery finds nothing loads no adapter at all (start-up time and memory sit beside the model).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError
from telegraf_llm_input.servers.base import Adapter, Answers, Fetcher, Reading
from telegraf_llm_input.servertypes import MODULES, TYPES, ServerType


def module(server_type: str) -> ModuleType:
    """The adapter module of a server type, imported on first use."""
    return importlib.import_module(f"{__name__}.{MODULES[server_type]}")


async def detect(fetch: Fetcher) -> ServerType | None:
    """The server type at the target, or None. Raises the first error when nothing answered at all."""
    answers = Answers(fetch)
    for server_type in TYPES:  # the registry's order: most specific first
        for rule in getattr(module(server_type), "DETECT", ()):
            if await rule.holds(answers):
                return server_type
    if answers.errors and all(e.kind in ("refused", "timeout", "tls") for e in answers.errors):
        raise answers.errors[0]
    return None


class AutoAdapter:
    """`type: auto`: identify the server on first contact, then behave as that type."""

    server_type = "auto"

    def __init__(self, target: TargetConfig) -> None:
        self.target = target
        self.resolved: Adapter | None = None

    async def read(self, fetch: Fetcher) -> Reading:
        if self.resolved is None:
            kind = await detect(fetch)
            if kind is None:
                raise FetchError(
                    "unknown", f"{fetch.target.display_name}: answers, but is no server type we know (set `type:`)"
                )
            self.resolved = module(kind).make(self.target)
        return await self.resolved.read(fetch)


def make_adapter(target: TargetConfig) -> Adapter:
    if target.type == "auto":
        return AutoAdapter(target)
    adapter: Adapter = module(target.type).make(target)
    return adapter
