"""When a stream's events arrived: the one walker of `StreamReader` events, used by the probe and the proxy.

Each read's events are stamped with the read's time (monotonic ns): first and last generated chunk, the
answer's start after any thinking, the server's own numbers by where they came from, and the end marks. Pure:
no socket, no clock. Which count wins when a server gives several (usage, then Ollama's, then llama.cpp's)
is decided here too, so the probe and the proxy report the same tokens for the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from telegraf_llm_input.apis.base import Answer, Event, Finished, NoAnswer, Origin, Stats, StreamError, Token

_NONE = Stats("usage")


@dataclass
class Timeline:
    first_ns: int | None = None
    """The first generated chunk (content, reasoning or a tool call; never a role-only one)."""
    last_ns: int | None = None
    answer_ns: int | None = None
    """The answer's first chunk after any thinking."""
    stats: dict[Origin, Stats] = field(default_factory=dict)
    """The server's numbers by origin, each merged over the answer (later values win)."""
    finished: bool = False
    """The server marked the answer complete."""
    bad: str | None = None
    """Why the answer broke (a `StreamError`'s one line)."""

    def apply(self, t_ns: int, events: Iterable[Event]) -> int:
        """Take one read's events, received at t_ns. Returns how many generated chunks they held."""
        tokens = 0
        for event in events:
            kind = type(event)  # the event types are final: `is` is isinstance, at a fraction of its cost a chunk
            if kind is Token:
                if self.first_ns is None:
                    self.first_ns = t_ns
                self.last_ns = t_ns
                tokens += 1
            elif kind is Answer:
                self.answer_ns = t_ns
            elif kind is NoAnswer:
                self.answer_ns = None
            elif kind is Stats:
                assert isinstance(event, Stats)
                old = self.stats.get(event.origin)
                self.stats[event.origin] = event if old is None else old.merged(event)
            elif kind is Finished:
                self.finished = True
            elif kind is StreamError:
                assert isinstance(event, StreamError)
                self.bad = event.detail
        return tokens

    def output_tokens(self) -> tuple[Origin | None, int | None]:
        """The server's count of generated tokens and where it came from: usage, then Ollama's, then llama.cpp's."""
        for origin in ("usage", "ollama", "llamacpp"):
            n = self.stats.get(origin, _NONE).output_tokens
            if n:
                return origin, n
        return None, None

    def prompt_tokens(self) -> int | None:
        """The server's count of prompt tokens, in the same order."""
        for origin in ("usage", "ollama", "llamacpp"):
            n = self.stats.get(origin, _NONE).prompt_tokens
            if n is not None:
                return n
        return None
