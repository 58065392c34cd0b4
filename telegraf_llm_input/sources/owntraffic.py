"""Leave the probe's own requests out of a server log's user traffic.

The probe says when each of its requests started and ended (`ProbeSent`, `sources/base.ProbeLedger`); its
line in the server's log is the request that fits that window best: same path where the log has paths
(Ollama), a server time no longer than the window, a log time inside it where the log has times, and the
server time closest to the window's length; a line marked as a probe's (Ollama: its query) first. Marked lines
never count, whichever process sent them (`top` beside the agent probes too). While a probe request is in flight (or ended less than `GRACE_S`
ago without its line found), lines that could be its line wait; everything else counts at once. A line read
later than that (gathers 20-30 s apart) is still looked for first: the grace only ends the wait. Pure: the
caller gives the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from telegraf_llm_input.serverlogs.base import Event, Request
from telegraf_llm_input.sources.base import ProbeSent

GRACE_S = 10.0
"""How long after a probe request ended its line may still come (gin logs once the handler returned)."""
SLACK_MS = 50.0
"""The server's time may exceed the probe's by this much (clocks read at different moments)."""
ZONE_STEP_S = 900.0
"""Time zones are whole quarter hours apart. gin writes the server's local time, read here as the agent's: Ollama
in a container runs in UTC while the host may not, so a line's time is compared modulo this step."""
MAX_ZONE_SHIFT_S = 14 * 3600.0


def _fits(r: Request, sent: ProbeSent, now: float) -> bool:
    if sent.path and r.path and r.path != sent.path:
        return False
    end = sent.ended_at if sent.ended_at is not None else now
    if r.e2e_ms is not None and r.e2e_ms > (end - sent.started_at) * 1000 + SLACK_MS:
        return False
    if r.logged_at is None:
        return True
    # gin's time is whole seconds of the server's local clock (maybe another zone's): a second either side
    shift = round((r.logged_at - (sent.started_at + end) / 2) / ZONE_STEP_S) * ZONE_STEP_S
    logged_at = r.logged_at - shift if abs(shift) <= MAX_ZONE_SHIFT_S else r.logged_at
    return sent.started_at - 1 <= logged_at <= end + 2


@dataclass
class OwnTraffic:
    """Held lines and the probe requests already matched with theirs."""

    held: list[Event] = field(default_factory=list)
    matched: set[tuple[str, float]] = field(default_factory=set)
    """(path, started_at) of probe requests whose line was found."""

    def user_events(self, events: list[Event], sent: list[ProbeSent], now: float) -> list[Event]:
        """`events` (and those held before) minus the probe's own; lines that may still be a probe's are held."""
        pool = self.held + events
        self.held = []
        live = [s for s in sent if (s.path, s.started_at) not in self.matched]
        self.matched &= {(s.path, s.started_at) for s in sent}
        drop: set[int] = set()
        waiting: list[ProbeSent] = []
        for s in live:
            if s.ended_at is None:
                waiting.append(s)
                continue
            best = None
            for i, e in enumerate(pool):
                if i in drop or not isinstance(e, Request) or not _fits(e, s, now):
                    continue
                gap = -1.0 if e.probe else abs((s.ended_at - s.started_at) * 1000 - (e.e2e_ms or 0.0))
                if best is None or gap < best[0]:
                    best = (gap, i)
            if best is not None:
                drop.add(best[1])
                self.matched.add((s.path, s.started_at))
            elif now - s.ended_at >= GRACE_S:
                # its line never came (read up to `now`): given up, matches nothing later
                self.matched.add((s.path, s.started_at))
            else:
                waiting.append(s)
        out: list[Event] = []
        for i, e in enumerate(pool):
            if i in drop or (isinstance(e, Request) and e.probe):  # marked: a probe's, ours or another process's
                continue
            if isinstance(e, Request) and any(_fits(e, s, now) for s in waiting):
                self.held.append(e)
            else:
                out.append(e)
        return out
