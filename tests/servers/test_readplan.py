"""The read plan gives exactly what the parser and `read_page` give, on any page; it falls back and recompiles when a
page is of another shape, and holds no more than the line heads it replaces."""

from __future__ import annotations

import gc
import math
import random
import sys
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError, Response
from telegraf_llm_input.lineprotocol import encode_metric
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.promtext import MAX_HEADS
from telegraf_llm_input.servers import llamacpp, proxy, sglang, tgi, vllm
from telegraf_llm_input.servers.base import ModelReading
from telegraf_llm_input.servers.generic_prometheus import AnyReader, read_any
from telegraf_llm_input.servers.promtable import PromTable, parse_checked, read_page
from telegraf_llm_input.servers.readplan import PageReader
from telegraf_llm_input.sources.target import Baseline, derive

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "prometheus"
PAGES: dict[str, tuple[PromTable, str | None]] = {
    "vllm.txt": (vllm.TABLE, None),
    "vllm_dp2.txt": (vllm.TABLE, None),
    "vllm_v0.txt": (vllm.TABLE, None),
    "vllm_0.10_generation_only.txt": (vllm.TABLE, None),
    "sglang.txt": (sglang.TABLE, None),
    "tgi.txt": (tgi.TABLE, "bigscience/bloom-560m"),
    "proxy.txt": (proxy.TABLE, None),
    "llamacpp.txt": (llamacpp.TABLE, None),
    "llamacpp_old.txt": (llamacpp.TABLE, None),
}
S = 1_000_000_000


def reference(table: PromTable, text: str, model: str | None) -> list[ModelReading] | str:
    """What the parser and `read_page` make of the page (the FetchError's kind when it is refused)."""
    try:
        return read_page(table, parse_checked(text, table, "t"), model)
    except FetchError as exc:
        return exc.kind


def planned(reader: PageReader, text: str, model: str | None) -> list[ModelReading] | str:
    try:
        return reader.readings(reader.scan(text, "t"), model)
    except FetchError as exc:
        return exc.kind


def lines(before: list[ModelReading], after: list[ModelReading]) -> list[str | None]:
    """The line protocol of `after`'s fields over the interval since `before` (a second apart)."""
    prev = {m.model: Baseline.of(m, S) for m in before}
    return [
        encode_metric(Metric("llm_server", {"model": m.model or "-"}, derive(prev.get(m.model), m, 2 * S).fields, S))
        for m in after
    ]


def compiled(name: str) -> tuple[PageReader, PromTable, str | None, str, list[ModelReading]]:
    """A reader that read fixture `name` once (and so holds its plan)."""
    table, model = PAGES[name]
    text = (FIXTURES / name).read_text()
    reader = PageReader(table)
    first = reader.readings(reader.scan(text, "t"), model)
    assert reader.plan is not None and reader.compiled == 1
    return reader, table, model, text, first


def assert_same(reader: PageReader, table: PromTable, model: str | None, text: str, before: list[ModelReading]) -> None:
    want = reference(table, text, model)
    got = planned(reader, text, model)
    # repr: NaN equals itself, -0.0 differs from 0.0, and dicts must have their keys in the same order
    assert repr(got) == repr(want)
    if not isinstance(want, str) and not isinstance(got, str):
        assert lines(before, got) == lines(before, want)


VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(
        [
            "NaN", "+Inf", "-Inf", "inf", "nan", "-0", "0", "1e3", "1E-3", "1_000", "0x10", "", " ", "7 ", " 7",
            "7\r", "1 1700000000000", "1 # {trace_id=\"a\"} 1", "}", "{", '"', "#", "١٢", "1.5\u2003", "1 2 3",
        ]
    ),
)  # fmt: skip
JUNK = st.sampled_from(
    [
        "", "   ", "garbage{", "}}}", "# EOF", "# HELP x y", "# TYPE vllm:num_requests_running counter", "#",
        "foo 1", "foo", "foo{} 1", '{"vllm:num_requests_running"} 1', 'vllm:num_requests_running{model_name="other"} 3',
        'vllm:num_requests_running {model_name="x"} 3', "vllm:num_requests_running 3", "tgi_queue_size 5",
        'llamacpp:requests_processing 2', 'vllm:prompt_tokens_total{model_name="a",engine="0"} 1 # {a="b"} 2',
    ]
)  # fmt: skip


@st.composite
def perturbed(draw: st.DrawFn, text: str) -> str:
    """The page with a few changes: values, lines removed, repeated, swapped, inserted, labels and bounds edited."""
    out = text.split("\n")
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(out) - 1))
        line = out[i]
        op = draw(st.sampled_from(["value", "value", "value", "delete", "repeat", "swap", "insert", "label", "space"]))
        if op == "value" and line and not line.startswith("#"):
            out[i] = line.rsplit(" ", 1)[0] + " " + draw(VALUES)
        elif op == "delete":
            del out[i]
        elif op == "repeat":
            out.insert(draw(st.integers(0, len(out))), line)
        elif op == "swap":
            j = draw(st.integers(0, len(out) - 1))
            out[i], out[j] = out[j], out[i]
        elif op == "insert":
            out.insert(i, draw(JUNK))
        elif op == "label" and '="' in line:
            at = line.index('="') + 2
            out[i] = line[:at] + draw(st.sampled_from(["x", "0.6", "+Inf", "", "error", "ERROR"])) + line[at:]
        elif op == "space":
            out[i] = draw(st.sampled_from([" ", "\t", ""])) + line + draw(st.sampled_from(["", " ", "\r"]))
        if not out:
            out.append("")
    return "\n".join(out)


@pytest.mark.parametrize("name", sorted(PAGES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_plan_reads_any_page_as_the_parser_does(name, data):
    reader, table, model, text, first = compiled(name)
    page = data.draw(perturbed(text))
    assert_same(reader, table, model, page, first)
    # and the page after it (the plan compiled from a perturbed page, or the old one kept)
    assert_same(reader, table, model, data.draw(perturbed(text)), first)


def new_values(text: str, seed: int, special_share: float) -> str:
    """The page with every sample's value replaced (a share of them NaN, ±Inf, ±0, huge or tiny)."""
    rng = random.Random(seed)
    special = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e300, 5e-324]
    out = []
    for line in text.split("\n"):
        if line and not line.startswith("#"):
            value = rng.choice(special) if rng.random() < special_share else rng.choice([1.0, 1e6, 1e-3]) * rng.random()
            line = line.rsplit(" ", 1)[0] + " " + repr(value)
        out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("name", sorted(PAGES))
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_pages_that_only_change_values_are_read_by_the_plan(name, seed):
    """The usual page: the same series in the same order, new values (counters reset, NaN, +Inf: any float)."""
    reader, table, model, text, first = compiled(name)
    assert_same(reader, table, model, new_values(text, seed, 0.1), first)
    assert reader.planned == 1 and reader.compiled == 1


def test_a_page_of_another_shape_falls_back_and_recompiles():
    reader, table, model, text, first = compiled("vllm.txt")
    grown = text + 'vllm:num_requests_running{engine="1",model_name="Qwen/Qwen2.5-7B-Instruct"} 2.0\n'
    for page, plans, compiles in [(text, 1, 1), (grown, 1, 2), (grown, 2, 2), (text, 2, 3), (text, 3, 3)]:
        assert_same(reader, table, model, page, first)
        assert (reader.planned, reader.compiled) == (plans, compiles)
    # another default model (TGI's /info answered another one): the parser reads it, and a plan for that model
    reader, table, model, text, first = compiled("tgi.txt")
    assert_same(reader, table, "other", text, first)
    assert (reader.planned, reader.compiled) == (0, 2)
    assert reader.plan is not None and reader.plan.default_model == "other"


def test_values_the_parser_refuses_fall_back():
    reader, table, model, text, first = compiled("vllm.txt")
    line = next(x for x in text.split("\n") if x.startswith("vllm:num_requests_running"))
    for value in ["1_000", "1 1700000000000", "0x10", "", '1 # {a="b"} 2']:
        assert_same(reader, table, model, text.replace(line, line.rsplit(" ", 1)[0] + " " + value), first)
    assert reader.planned == 0 and reader.compiled == 1  # each read the long way (a page with a fault: no plan)
    for _ in range(PageReader.MAX_WAIT + 2):  # good pages again: a plan again, once the back-off has passed
        assert_same(reader, table, model, text, first)
    assert reader.planned > 0 and reader.compiled == 2


def test_a_page_of_new_series_every_scrape_compiles_rarely_and_stays_bounded():
    """Labels that change every scrape: plans go unused, so they are compiled ever more rarely, and what the reader
    keeps is one plan and the bounded line heads, whatever the number of pages."""
    table = vllm.TABLE
    base = (FIXTURES / "vllm.txt").read_text()
    reader = PageReader(table)
    sizes = []
    for i in range(400):
        text = base + f'vllm:num_requests_running{{engine="{i}",model_name="Qwen/Qwen2.5-7B-Instruct"}} 1.0\n'
        assert_same(reader, table, None, text, [])
        if i in (99, 399):
            sizes.append(held(reader))
    assert reader.planned == 0
    assert reader.compiled < 40  # 1, 2, 4, ... then one in every MAX_WAIT + 1 pages
    assert len(reader.heads) <= MAX_HEADS
    assert sizes[1] < sizes[0] * 1.5


def held(root: object, stop: tuple[object, ...] = (vllm.TABLE,)) -> int:
    """Bytes reachable from `root` (not through modules, classes, functions or `stop`)."""
    seen = {id(x) for x in stop}
    total = 0
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        todo.extend(gc.get_referents(obj))
    return total


def test_a_plan_holds_less_than_the_line_heads_it_replaces():
    table = vllm.TABLE
    text = (FIXTURES / "vllm.txt").read_text()
    reader = PageReader(table)
    reader.readings(reader.scan(text, "t"))  # parsed with heads, then compiled (the heads dropped)
    parsed = PageReader(table)
    parse_checked(text, table, "t", heads=parsed.heads)
    assert reader.plan is not None and not reader.heads
    assert held(reader) < held(parsed.heads)


def test_nan_samples_leave_a_model_out_as_read_page_does():
    reader, table, model, text, first = compiled("vllm_dp2.txt")
    out = [
        line.rsplit(" ", 1)[0] + " NaN" if line and not line.startswith("#") and "_bucket" not in line else line
        for line in text.split("\n")
    ]
    assert_same(reader, table, model, "\n".join(out), first)
    assert reader.planned == 1
    assert not any(math.isnan(v) for m in first for v in m.gauges.values())


def test_an_answer_is_read_by_the_plan_as_it_came_and_refused_as_the_parser_refuses_it():
    reader, table, model, text, first = compiled("vllm.txt")
    body = bytearray(text.encode())
    got = reader.readings(reader.scan(Response(200, {}, body, "u"), "t"), model)
    assert repr(got) == repr(reference(table, text, model)) and reader.planned == 1
    # a byte no UTF-8 decoder takes, on a line the table does not read: the same error as the long way
    bad = bytearray(
        text.replace("python_gc_objects_collected_total{", "python_gc_objects_collected_total{\udcff", 1).encode(
            "utf-8", "surrogateescape"
        )
    )
    assert bad != body
    with pytest.raises(FetchError) as refused:
        reader.readings(reader.scan(Response(200, {}, bad, "u"), "t"), model)
    assert refused.value.kind == "bad_encoding" and reader.planned == 1


def test_every_prometheus_fixture_is_held_to_the_plan():
    assert {p.name for p in FIXTURES.glob("*.txt")} == set(PAGES)


def test_targets_serving_the_same_page_hold_one_plan():
    reader, table, model, text, first = compiled("vllm.txt")
    replica = PageReader(table)  # another target serving the same page, its values moved
    moved = text.replace(" 1.0\n", " 3.0\n")
    assert moved != text
    replica.readings(replica.scan(moved, "t2"), model)
    assert replica.plan is reader.plan and replica.compiled == 1
    assert_same(replica, table, model, text, first)  # read as the parser reads it
    other = PageReader(table)  # another default model, or another page: a plan of its own
    other.readings(other.scan(text, "t3"), "other")
    grown = PageReader(table)
    grown.readings(grown.scan(text + 'vllm:num_requests_running{engine="1",model_name="m"} 2.0\n', "t4"), model)
    assert other.plan is not None and other.plan is not reader.plan and other.plan.shape is reader.plan.shape
    assert grown.plan is not None and grown.plan.shape is not reader.plan.shape


# `type: prometheus` (any page, every name read): the same plan machinery, held to `read_any`, on every fixture
ANY = [
    TargetConfig(url="http://127.0.0.1:9", type="prometheus"),
    TargetConfig(url="http://127.0.0.1:9", type="prometheus", include=["*_total", "*seconds*"], exclude=["*cpu*"]),
]


def any_reference(target: TargetConfig, text: str) -> list[ModelReading] | str:
    try:
        return read_any(parse_checked(text, None, "t"), target.include, target.exclude, target.measurement)
    except FetchError as exc:
        return exc.kind


def any_same(reader: AnyReader, text: str) -> None:
    want, got = any_reference(reader.target, text), planned(reader, text, None)
    assert repr(got) == repr(want)


@pytest.mark.parametrize("which", range(len(ANY)))
@pytest.mark.parametrize("name", sorted(PAGES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_plan_reads_any_page_as_read_any_does(name, which, data):
    text = (FIXTURES / name).read_text()
    reader = AnyReader(ANY[which])
    any_same(reader, text)
    assert reader.plan is not None and reader.compiled == 1
    any_same(reader, data.draw(perturbed(text)))
    any_same(reader, data.draw(perturbed(text)))


@pytest.mark.parametrize("name", sorted(PAGES))
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_any_page_that_only_changes_values_is_read_by_the_plan(name, seed):
    text = (FIXTURES / name).read_text()
    reader = AnyReader(ANY[0])
    any_same(reader, text)
    any_same(reader, new_values(text, seed, 0.2))
    assert reader.planned == 1 and reader.compiled == 1
