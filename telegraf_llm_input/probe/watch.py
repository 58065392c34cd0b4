"""When the probe may send a request to Ollama: while its user is using the model (pure).

Ollama keeps one session duration per loaded model, set by the last request that sent a `keep_alive`, and a
request without one (most chat clients) gets that stored duration again. So the probe sends no `keep_alive` at
all (the stored duration stays the user's), and since every request ends with `expires_at = end + stored
duration`, it probes only right after it has seen a *fresh countdown*: a model whose `expires_at` moved forward
since the previous look at `/api/ps`, and not because of the probe's own request. The probe then moves the
countdown by at most the time between two looks plus its own duration; an idle model is never kept loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FOREVER_S = 100 * 365 * 86400.0
"""More left than this is Ollama's "keep forever" (`keep_alive: -1` shows ~292 years ahead): nothing to move."""
MOVED_S = 0.001
"""A forward move of `expires_at` smaller than this is the same instant read twice, not a request's end."""
SETTLE_S = 1.0
"""How long after the probe's own request ended Ollama may still be setting that request's `expires_at`: a move
seen by a look whose previous look came before then is the probe's own (a user's request that ended in that
window is missed, so the probe waits for the next one: it errs towards not probing)."""


@dataclass
class Watch:
    """Ollama's `expires_at` per model at the previous look, and when the probe's own last request ended."""

    previous: dict[str, float | None] = field(default_factory=dict)
    previous_at: float | None = None
    """Wall time (Unix s) of the previous look; None before the first."""
    own_end: float | None = None
    fresh: frozenset[str] = frozenset()
    """The models whose countdown the latest look found fresh (a user's request ended since the look before)."""

    def see(self, expires: dict[str, float | None], now: float) -> frozenset[str]:
        """Record one look (model -> `expires_at`, Unix s) taken at `now`; the models with a fresh countdown."""
        own = self.own_end is not None and self.previous_at is not None and self.previous_at < self.own_end + SETTLE_S
        fresh = set()
        if self.previous_at is not None and not own:
            for name, until in expires.items():
                before = self.previous.get(name)
                appeared = name not in self.previous  # loaded since: by a user's request (the probe loads none)
                if appeared or (until is not None and before is not None and until > before + MOVED_S):
                    fresh.add(name)
        self.previous, self.previous_at, self.fresh = dict(expires), now, frozenset(fresh)
        return self.fresh

    def probed(self, end: float) -> None:
        """The probe's own request ended at `end` (Unix s): the move it causes is not a user's."""
        self.own_end = end
        self.fresh = frozenset()


def forever(until: float | None, now: float) -> bool:
    """Kept loaded forever (`keep_alive: -1`): a probe moves nothing there."""
    return until is not None and until - now > FOREVER_S
