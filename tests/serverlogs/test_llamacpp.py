"""llama-server's print_timing blocks (formatted as server-context.cpp writes them) -> one request each."""

from __future__ import annotations

import json

import pytest

from telegraf_llm_input.serverlogs.base import GENERATE, Request
from telegraf_llm_input.serverlogs.llamacpp import MAX_PENDING, Parser
from tests.fakes.serverlogs import print_timing_lines


def feed(parser: Parser, lines: list[str]) -> list:
    return [e for line in lines for e in parser.feed(line.rstrip("\n"))]


@pytest.mark.parametrize("stamp_us", [None, 35_147_123])
def test_the_issues_block(stamp_us):
    [event] = feed(Parser(), print_timing_lines(1, 517, 4.75, 192, 69.82, 85, stamp_us=stamp_us))
    assert event == Request(
        api=GENERATE, e2e_ms=74.57, prefill_ms=4.75, prompt_tokens=192, decode_ms=69.82, generation_tokens=85
    )
    assert event.tpot_ms == pytest.approx(69.82 / 85)


def test_interleaved_slots_are_kept_apart():
    a = print_timing_lines(0, 10, 1.0, 5, 10.0, 4)
    b = print_timing_lines(1, 11, 2.0, 7, 20.0, 8)
    lines = [a[0], b[0], a[1], b[1], b[2], a[2]]
    events = feed(Parser(), lines)
    assert [(e.prompt_tokens, e.generation_tokens) for e in events] == [(7, 8), (5, 4)]


def test_no_generated_tokens_no_tpot():
    [event] = feed(Parser(), print_timing_lines(0, 1, 3.0, 9, 0.0, 0))
    assert event.generation_tokens == 0 and event.tpot_ms is None


def test_json_lines_output_is_found_in_msg():
    lines = [
        json.dumps({"type": "log", "time": 1, "level": "INFO", "msg": s}) for s in print_timing_lines(2, 3, 1, 2, 3, 4)
    ]
    [event] = feed(Parser(), lines)
    assert event.generation_tokens == 4


def test_a_block_cut_off_does_not_grow_memory():
    parser = Parser()
    for task in range(MAX_PENDING * 3):
        feed(parser, print_timing_lines(0, task, 1, 1, 1, 1)[:1])
    assert len(parser._pending) <= MAX_PENDING + 1


@pytest.mark.parametrize(
    "line",
    [
        "slot launch_slot_: id  0 | task 5 | processing task",
        "slot print_timing: id  0 | task 5 |    graphs reused =          3",
        "srv  update_slots: all slots are idle",
        "slot print_timing: id  0 | task 5 | prompt eval time = garbage",
    ],
)
def test_other_lines(line):
    assert Parser().feed(line) == []
