"""A page's shape reads a later page of the same shape by position, and refuses any page the parser would read
another way."""

from __future__ import annotations

import pytest

from telegraf_llm_input.promshape import compile_shape
from telegraf_llm_input.promtext import parse

ONLY = frozenset({"a", "b_bucket"})
PAGE = '# HELP a The a.\n# TYPE a gauge\na{m="x"} 1.5\na 2\nskipped{m="x"} 3\nskipped_too 4\nb_bucket{le="1"} 5\n\n'


def shape_of(text: str):
    page = parse(text, only=ONLY)
    return compile_shape(text, page, page.samples, ONLY)


def test_a_page_of_the_same_shape_gives_its_values_in_page_order():
    shape = shape_of(PAGE)
    assert shape is not None and shape.samples == 3
    later = PAGE.replace("1.5", "NaN").replace("a 2", "a +Inf").replace("3\n", "30 1700000000\n").replace("4", "x")
    values = shape.values(later)
    assert values is not None and values[0] != values[0] and values[1:] == [float("inf"), 5.0]
    assert shape.values(PAGE.replace("\n", "\r\n")) is None  # another line: a comment line differs
    assert shape.values("\ufeff" + PAGE) == [1.5, 2.0, 5.0]  # a byte-order mark is not part of the page


@pytest.mark.parametrize(
    "later",
    [
        PAGE.replace("1.5", "1_5"),  # float() takes it, the format does not
        PAGE.replace("1.5", "1.5 1700000000"),  # a timestamp
        PAGE.replace("a 2", 'a 2 # {t="x"} 1'),  # an exemplar
        PAGE.replace("a 2", "a 2}"),
        PAGE.replace("a 2", "inf"),  # a line without its head, whose rest alone would be a float
        PAGE.replace('a{m="x"}', 'a{m="y"}'),  # another series
        PAGE.replace('le="1"', 'le="2"'),  # another bound
        PAGE.replace('skipped{m="x"} 3', 'a{m="z"} 3'),  # a skipped line now of a name read
        PAGE.replace("skipped_too 4", "skipped_tooo 4"),
        PAGE.replace("# TYPE a gauge", "# EOF"),
        PAGE.replace("# HELP a The a.", "a 9"),
        PAGE + "a 3\n",  # one more line
        PAGE[:-1],  # one line fewer
        PAGE.replace("1.5", "١"),  # a digit float(str) reads but the bytes are not ASCII: the long way
    ],
)
def test_a_page_of_another_shape_is_refused(later):
    shape = shape_of(PAGE)
    assert shape is not None and shape.values(later) is None


@pytest.mark.parametrize(
    "page",
    [
        PAGE + "9junk 1\n",  # a line the parser counts as a fault
        PAGE + "# EOF\n",
        PAGE + "a 1 1700000000\n",  # a timestamp
        PAGE + "skipped",  # a bare name ending the page: its head would start longer names too
        PAGE + 'a{m="x"} 1 # {t="y"} 2\n',
    ],
)
def test_a_page_a_shape_cannot_check_has_none(page):
    assert shape_of(page) is None


def test_targets_serving_the_same_page_hold_one_shape():
    first = shape_of(PAGE)
    same = shape_of(PAGE.replace("1.5", "7"))  # other values: the same shape, held once
    other = shape_of(PAGE.replace('le="1"', 'le="2"'))
    assert first is not None and same is first
    assert other is not None and other is not first and other.values(PAGE) is None
    assert same.values(PAGE) == [1.5, 2.0, 5.0]


def test_servers_serving_other_models_hold_one_layout_and_each_reads_only_its_own_page():
    first = shape_of(PAGE)
    other_text = PAGE.replace('m="x"', 'm="y"')
    other = shape_of(other_text)
    assert first is not None and other is not None and other is not first
    assert other._layout is first._layout  # line count, fixed lines, positions, skipped heads: held once
    assert first.values(other_text) is None and other.values(PAGE) is None
    assert other.values(other_text.replace("1.5", "8")) == [8.0, 2.0, 5.0]
    # the same samples under other fixed lines: another layout, and neither reads the other's page
    helped = PAGE.replace("The a.", "The A.")
    third = shape_of(helped)
    assert third is not None and third._layout is not first._layout
    assert first.values(helped) is None and third.values(PAGE) is None
