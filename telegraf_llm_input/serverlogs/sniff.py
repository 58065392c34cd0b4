"""Whose log is this: for a `type: auto` target whose `log:` the process cannot name (docker-proxy on the port,
a process hidden from this user, a renamed binary), the first line a format understands says which server wrote it."""

from __future__ import annotations

from types import ModuleType

from telegraf_llm_input.serverlogs.base import Event, Parser


class Sniffer:
    """Feeds each line to every format's parser until one understands a line; then only to that one."""

    def __init__(self, formats: dict[str, ModuleType]):
        self._parsers: dict[str, Parser] = {kind: module.Parser() for kind, module in formats.items()}
        self.server_type: str | None = None

    def carry(self) -> list[object]:
        return [[kind, parser.carry()] for kind, parser in self._parsers.items()]

    def resume(self, carried: object) -> None:
        for item in carried if isinstance(carried, list) else []:
            if isinstance(item, list) and len(item) == 2 and item[0] in self._parsers:
                self._parsers[item[0]].resume(item[1])

    def feed(self, line: str) -> list[Event]:
        for kind, parser in self._parsers.items():
            events = parser.feed(line)
            if events and self.server_type is None:
                self.server_type, self._parsers = kind, {kind: parser}
                return events
            if self.server_type is not None:
                return events
        return []
