"""What each server type gives: the llm_server fields of its API (its adapter's table) and of its own log
(serverlogs/). For the docs, the dashboards and their tests: a run does not ask, so it loads no log format for it.
"""

from __future__ import annotations

from telegraf_llm_input.serverlogs import FORMATS
from telegraf_llm_input.servers import module
from telegraf_llm_input.servertypes import TYPES


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
