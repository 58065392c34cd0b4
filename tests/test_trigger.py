"""The clock's gathers (`Trigger.every`): started in the clock's callback as the waiting task, handed over when they
wait. What asyncio offers a task (asyncio.timeout, cancellation, a failure) works in them as in any task."""

from __future__ import annotations

import asyncio
import sys

import pytest

from telegraf_llm_input.trigger import Trigger, next_aligned


async def _one_handed(work) -> object:
    """Serve one clock tick of `work`: what awaiting the handed-over gather gave (or raised)."""
    trigger = Trigger(asyncio.get_running_loop())
    trigger.every(0.02, work)
    try:
        assert await trigger.wait()
        handed = trigger.handed()
        assert handed is not None
        return await handed
    finally:
        trigger.stop()


def test_a_failure_before_the_first_wait_is_raised_where_the_gather_is_awaited():
    async def work():
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        asyncio.run(_one_handed(work))


def test_a_handed_over_gather_returns_its_value_and_sees_the_waiting_task():
    async def scenario():
        tasks = []

        async def work():
            tasks.append(asyncio.current_task())
            await asyncio.sleep(0.01)
            tasks.append(asyncio.current_task())
            return "done"

        return await _one_handed(work), tasks, asyncio.current_task()

    value, tasks, me = asyncio.run(scenario())
    assert (value, tasks) == ("done", [me, me])


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
def test_asyncio_timeout_started_in_the_clock_callback_ends_the_handed_over_gather_and_leaves_no_cancel():
    async def scenario():
        async def work():
            try:
                async with asyncio.timeout(0.05):  # needs a current task: the waiting one
                    await asyncio.sleep(30)
            except TimeoutError:
                return "timed out"
            return "slept"

        value = await _one_handed(work)
        return value, asyncio.current_task().cancelling()

    assert asyncio.run(scenario()) == ("timed out", 0)


def test_ticks_while_the_waiting_task_is_busy_are_skipped():
    async def scenario():
        trigger = Trigger(asyncio.get_running_loop())
        started = 0

        async def work():
            nonlocal started
            started += 1
            await asyncio.sleep(0.3)  # ~15 ticks of 0.02 s pass meanwhile

        trigger.every(0.02, work)
        assert await trigger.wait()
        await trigger.handed()
        trigger.stop()
        return started, await trigger.wait()

    assert asyncio.run(scenario()) == (1, False)


def test_ticks_are_wall_clock_multiples():
    assert next_aligned(12.3, 5.0) == 15.0
    assert next_aligned(15.0, 5.0) == 20.0


def test_work_done_at_once_is_not_handed_over_and_the_waiting_task_sleeps_on():
    async def scenario():
        trigger = Trigger(asyncio.get_running_loop())
        seen = []

        def work():  # an idle gather into sinks that take it at once: nothing returned to finish
            seen.append(asyncio.current_task())
            return None

        trigger.every(0.02, work)
        waiting = asyncio.ensure_future(trigger.wait())
        for _ in range(200):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.01)
        resumed = waiting.done()
        trigger.stop()
        return seen, resumed, await waiting

    seen, resumed, last = asyncio.run(scenario())
    assert len(seen) >= 3 and set(seen) == {None}  # plain calls in the clock's callback
    assert not resumed and last is False


def test_a_failure_in_the_work_call_itself_is_raised_where_the_gather_is_awaited():
    def work():
        raise ValueError("broken before any coroutine")

    with pytest.raises(ValueError, match="broken before any coroutine"):
        asyncio.run(_one_handed(work))


def test_the_next_tick_in_floats_is_the_next_wall_clock_multiple():
    now = 1_796_453_335.0012
    assert next_aligned(now, 1.0) == 1_796_453_336.0
    assert next_aligned(now, 10.0) == 1_796_453_340.0
    assert next_aligned(1_796_453_340.0, 10.0) == 1_796_453_350.0
