"""The proxy yields its core after waking a reader, and stops for a while once a yield shows the core is busy."""

from __future__ import annotations

from telegraf_llm_input.proxy.courtesy import PAUSE_NS, SLOW_NS, Courtesy


class Core:
    """A clock and a sched_yield: each yield takes `took` ns of the clock."""

    def __init__(self) -> None:
        self.now = 0
        self.took = 2_000
        self.yields = 0

    def clock(self) -> int:
        return self.now

    def sched_yield(self) -> None:
        self.yields += 1
        self.now += self.took


def test_quick_yields_go_on():
    core = Core()
    courtesy = Courtesy(core.sched_yield, core.clock)
    courtesy.exchanges = 1
    for _ in range(100):
        courtesy()
        core.now += 50_000
    assert core.yields == 100 and courtesy.pauses == 0


def test_two_slow_yields_stop_the_yielding_for_a_while_then_it_is_tried_again():
    core = Core()
    courtesy = Courtesy(core.sched_yield, core.clock)
    courtesy.exchanges = 1
    core.took = SLOW_NS  # a busy process had the core for its turn
    courtesy()
    core.took = 2_000  # the busy process was on the other core
    courtesy()
    core.took = SLOW_NS
    courtesy()
    assert (core.yields, courtesy.pauses) == (3, 1)
    core.took = 2_000
    for _ in range(50):
        core.now += PAUSE_NS // 100
        courtesy()
    assert core.yields == 3  # paused: ~half of PAUSE_NS passed
    core.now += PAUSE_NS
    courtesy()
    assert core.yields == 4 and courtesy.pauses == 1


def test_a_slow_yield_now_and_then_does_not_stop_it():
    """A VM's host takes a core for a millisecond now and then: that is not a busy core."""
    core = Core()
    courtesy = Courtesy(core.sched_yield, core.clock)
    courtesy.exchanges = 1
    for i in range(3000):
        core.took = SLOW_NS if i % 1000 == 0 else 2_000
        courtesy()
        core.now += 20_000_000  # 50 yields a second: a slow one every 20 s
    assert core.yields == 3000 and courtesy.pauses == 0


def test_no_yield_while_other_exchanges_are_in_progress():
    core = Core()
    courtesy = Courtesy(core.sched_yield, core.clock)
    for exchanges in (0, 2, 64):
        courtesy.exchanges = exchanges
        courtesy()
    assert core.yields == 0
    courtesy.exchanges = 1
    courtesy()
    assert core.yields == 1


def test_without_sched_yield_nothing_happens():
    core = Core()
    Courtesy(None, core.clock)()
    assert core.yields == 0
