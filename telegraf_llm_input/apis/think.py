"""Where the answer starts in content that may carry inline `<think>...</think>`, seeing each chunk once.

Also handles chat templates that open the think block in the prompt, so only `</think>` is streamed: content
before a lone `</think>` was reasoning, decided when the tag arrives. Keeps no text but the last few
characters (a tag can be split across chunks).
"""

from __future__ import annotations

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_TAG_WINDOW = len(THINK_CLOSE) - 1


class ThinkTags:
    """Fed content chunks numbered in order; `answer_at()` is the number of the chunk the answer starts in."""

    def __init__(self) -> None:
        self._tail = ""
        self.opened = False
        self.closed = False
        self.first_plain_at: int | None = None
        self.first_after_close_at: int | None = None

    def feed(self, at: int, piece: str) -> None:
        if "<" not in piece and "<" not in self._tail:  # no tag within reach: most chunks
            self._tail = ""
            if piece.strip():
                if self.first_plain_at is None:
                    self.first_plain_at = at
                if self.closed and self.first_after_close_at is None:
                    self.first_after_close_at = at
            return
        window = self._tail + piece
        if not self.opened and THINK_OPEN in window:
            self.opened = True
        if not self.closed:
            idx = window.find(THINK_CLOSE)
            if idx >= 0:
                self.closed = True
                if window[idx + len(THINK_CLOSE) :].strip():  # the tag ends in this piece: what follows is too
                    self.first_after_close_at = at
        elif self.first_after_close_at is None and piece.strip():
            self.first_after_close_at = at
        if self.first_plain_at is None and piece.strip():
            self.first_plain_at = at
        self._tail = window[-_TAG_WINDOW:]

    @property
    def reasoning(self) -> bool:
        return self.opened or self.closed

    def answer_at(self) -> int | None:
        if self.closed:
            return self.first_after_close_at
        if self.opened:
            return None  # still thinking when the stream ended (max_tokens too small for this model)
        return self.first_plain_at
