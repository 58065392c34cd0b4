"""The probe's own requests are found in the server's log and left out; the user's stay."""

from __future__ import annotations

from telegraf_llm_input.serverlogs.base import Request
from telegraf_llm_input.sources.base import ProbeSent
from telegraf_llm_input.sources.owntraffic import GRACE_S, OwnTraffic

T0 = 1_800_000_000.0


def test_the_probes_line_is_dropped_and_the_users_kept():
    own = OwnTraffic()
    probe = ProbeSent("t", "/api/chat", T0, T0 + 0.8)
    user_long = Request(status=200, e2e_ms=5000.0, path="/api/chat", logged_at=T0)
    user_other_path = Request(status=200, e2e_ms=790.0, path="/api/generate", logged_at=T0)
    probes_line = Request(status=200, e2e_ms=795.0, path="/api/chat", logged_at=T0)
    user_short = Request(status=200, e2e_ms=20.0, path="/api/chat", logged_at=T0)
    out = own.user_events([user_long, user_other_path, probes_line, user_short], [probe], T0 + 1)
    assert out == [user_long, user_other_path, user_short]
    # matched once: the same ledger entry does not take a second line
    again = Request(status=200, e2e_ms=795.0, path="/api/chat", logged_at=T0)
    assert own.user_events([again], [probe], T0 + 2) == [again]


def test_lines_wait_while_a_probe_is_in_flight():
    own = OwnTraffic()
    in_flight = ProbeSent("t", "", T0, None)
    line = Request(e2e_ms=300.0)
    assert own.user_events([line], [in_flight], T0 + 0.5) == []  # it may be the probe's
    done = ProbeSent("t", "", T0, T0 + 0.6)
    other = Request(e2e_ms=100.0)
    assert own.user_events([other], [done], T0 + 1.0) == [other]  # the probe's (closest to 600 ms) dropped


def test_a_probe_whose_line_never_comes_holds_nothing_after_the_grace():
    own = OwnTraffic()
    sent = ProbeSent("t", "/api/chat", T0, T0 + 0.2)
    late = Request(status=200, e2e_ms=100.0, path="/api/chat", logged_at=None)
    far = Request(status=200, e2e_ms=5000.0, path="/api/chat", logged_at=None)
    assert own.user_events([far], [sent], T0 + 1) == [far]
    # no line fitted; past the grace the entry is dropped and an unrelated later line counts
    assert own.user_events([], [sent], T0 + GRACE_S + 1) == []
    assert own.user_events([late], [sent], T0 + GRACE_S + 2) == [late]


def test_the_probes_line_read_long_after_the_probe_ended_is_still_its_own():
    """Gathers every 20-30 s: the probe's line is first read more than GRACE_S after the probe ended."""
    own = OwnTraffic()
    sent = ProbeSent("t", "/api/chat", T0, T0 + 0.14)
    probes_line = Request(status=200, e2e_ms=140.0, path="/api/chat", logged_at=T0)
    user = Request(status=200, e2e_ms=900.0, path="/api/chat", logged_at=T0 - 5)
    assert own.user_events([user, probes_line], [sent], T0 + GRACE_S + 10) == [user]


def test_the_probes_line_in_another_time_zone_is_still_its_own():
    """gin writes the server's local time: Ollama in a container runs in UTC, the agent on the host maybe not
    (here UTC+2, read as local): the line's time is hours off, its path and duration still say it is the probe's."""
    own = OwnTraffic()
    sent = ProbeSent("t", "/api/chat", T0, T0 + 0.3)
    for hours in (2, -5.5, 5.75):
        probes_line = Request(status=200, e2e_ms=298.0, path="/api/chat", logged_at=T0 + 0.3 - hours * 3600)
        user = Request(status=200, e2e_ms=40.0, path="/api/chat", logged_at=T0 + 0.1 - hours * 3600)
        assert own.user_events([probes_line, user], [sent], T0 + 1) == [user]
        own.matched.clear()
