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
from telegraf_llm_input.serverlogs import FORMATS
from telegraf_llm_input.servers.base import Adapter, Answers, Fetcher, Reading
from telegraf_llm_input.servertypes import MODULES, TYPES, ServerType


def module(server_type: str) -> ModuleType:
    """The adapter module of a server type, imported on first use."""
    return importlib.import_module(f"{__name__}.{MODULES[server_type]}")


def page_fields(server_type: str) -> set[str]:
    """The llm_server fields a server type's API gives (its table's, and those its adapter sets itself)."""
    mod = module(server_type)
    table = getattr(mod, "TABLE", None)
    return (table.fields() if table is not None else set()) | set(getattr(mod, "FIELDS", ()))


def log_fields(server_type: str) -> set[str]:
    """The llm_server fields its own log gives (serverlogs/, read by sources/serverlog.py)."""
    fmt = FORMATS.get(server_type)
    return set(fmt.FIELDS) if fmt is not None else set()


def fields_of(server_type: str) -> set[str]:
    """The llm_server fields a server type gives: from its API and from its own log."""
    return page_fields(server_type) | log_fields(server_type)


def field_servers() -> dict[str, list[str]]:
    """llm_server field -> the server types that give it, from their tables (the schema's `servers` notes)."""
    out: dict[str, list[str]] = {}
    for server_type in TYPES:
        for name in sorted(page_fields(server_type)):
            out.setdefault(name, []).append(module(server_type).NAME)
    for server_type in TYPES:
        for name in sorted(log_fields(server_type)):
            out.setdefault(name, []).append(f"{module(server_type).NAME} log")
    return out


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
