"""The proxy yields its core after waking a reader, and stops for a while once its yields show the core is busy."""

from __future__ import annotations

from telegraf_llm_input.proxy.courtesy import PAUSE_NS, SLOW_NS, SLOW_WEIGHT, Courtesy


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

    def courtesy(self) -> Courtesy:
        """A Courtesy on this core, for one exchange in progress (the only case that yields)."""
        courtesy = Courtesy(self.sched_yield, self.clock)
        courtesy.exchanges = 1
        return courtesy

    def run(self, courtesy: Courtesy, yields: int, slow_every: int, apart_ns: int) -> None:
        """`yields` calls `apart_ns` apart, every `slow_every`-th one (the first included) slow; 0: none."""
        for i in range(yields):
            self.took = SLOW_NS if slow_every and i % slow_every == 0 else 2_000
            courtesy()
            self.now += apart_ns


def test_quick_yields_go_on():
    core = Core()
    courtesy = core.courtesy()
    core.run(courtesy, 100, slow_every=0, apart_ns=50_000)
    assert core.yields == 100 and courtesy.pauses == 0


def test_a_busy_core_stops_the_yielding_for_a_while_then_it_is_tried_again():
    """A process spinning on every core: one yield in three gave it a whole turn, the others were quick (it was on
    the other core)."""
    core = Core()
    courtesy = core.courtesy()
    core.run(courtesy, 30, slow_every=3, apart_ns=1_000_000)
    assert courtesy.pauses == 1
    assert core.yields == 7  # the third slow one stopped it
    core.took = 2_000
    for _ in range(50):
        core.now += PAUSE_NS // 100
        courtesy()
    assert core.yields == 7  # paused: ~half of PAUSE_NS passed
    core.now += PAUSE_NS
    courtesy()
    assert core.yields == 8 and courtesy.pauses == 1


def test_two_slow_yields_in_a_row_stop_it():
    core = Core()
    courtesy = core.courtesy()
    core.took = SLOW_NS
    courtesy()
    assert courtesy.pauses == 0
    courtesy()
    assert courtesy.pauses == 1
    courtesy()
    assert core.yields == 2


def test_a_slow_yield_now_and_then_does_not_stop_it():
    """A VM's host takes a core for a millisecond every second or two, whatever the load: not a busy core. At the
    benchmark's pace (thousands of yields a second) two of them often fall within 10 s."""
    core = Core()
    courtesy = core.courtesy()
    core.run(courtesy, 30_000, slow_every=1_000, apart_ns=300_000)  # ~3,000 yields a second: a slow one every 0.3 s
    assert core.yields == 30_000 and courtesy.pauses == 0


def test_slow_yields_more_often_than_one_in_the_weight_stop_it_fewer_do_not():
    for every, stops in ((SLOW_WEIGHT // 2, True), (SLOW_WEIGHT - 1, True), (SLOW_WEIGHT + 2, False), (100, False)):
        core = Core()
        courtesy = core.courtesy()
        core.run(courtesy, every * 50, slow_every=every, apart_ns=1_000_000)
        assert (courtesy.pauses > 0) is stops, every


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
