"""What a model server's own log says, in our terms: one `Request` per finished request, one `ModelLoad` per load.

A log format (one module per server, like `servers/`) is a declarative table of regular expressions and a
`Parser` that turns lines into these events. Parsers are pure apart from the lines they wait for (a request
whose report spans several lines); they never see or keep prompt or response text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

GENERATE = "generate"
EMBED = "embed"
"""API classes (tag `api`): text generation (generate, chat, completions) and embeddings, kept apart."""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(line: str) -> str:
    """The line without terminal colour codes (gin and llama.cpp colour their output on a terminal)."""
    return _ANSI.sub("", line) if "\x1b" in line else line


@dataclass(frozen=True)
class Request:
    """One finished request as the server logged it; None where its log does not say."""

    api: str = GENERATE
    status: int | None = None
    e2e_ms: float | None = None
    prefill_ms: float | None = None
    prompt_tokens: int | None = None
    decode_ms: float | None = None
    generation_tokens: int | None = None
    path: str = ""
    """The request's path (Ollama), to tell the probe's own requests apart."""
    logged_at: float | None = None
    """When the server wrote the line (Unix seconds), where the line says."""
    probe: bool = False
    """The request carries the probe's mark (Ollama: `apis.ollama.PROBE_MARK` in its query): a probe's, sent by
    this process or another (`top` beside the agent); never user traffic."""

    @property
    def tpot_ms(self) -> float | None:
        if self.decode_ms is None or not self.generation_tokens:
            return None
        return self.decode_ms / self.generation_tokens


@dataclass(frozen=True)
class ModelLoad:
    seconds: float


Event = Request | ModelLoad


class Parser(Protocol):
    def feed(self, line: str) -> list[Event]:
        """Events a line completes (most lines: none)."""
        ...

    def carry(self) -> list[object]:
        """What it waits on (the first lines of a block), as JSON data: kept beside the log position, so a block
        an agent restart cuts in two is still whole."""
        ...

    def resume(self, carried: object) -> None:
        """Take back what `carry` gave (anything else is ignored)."""
        ...
