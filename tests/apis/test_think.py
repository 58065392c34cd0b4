"""Inline `<think>` tags: where the answer starts, seeing each chunk once and keeping no text."""

from hypothesis import given, strategies as st

from telegraf_llm_input.apis.think import ThinkTags
from tests.support.cuts import cut


def feed(pieces):
    t = ThinkTags()
    for i, piece in enumerate(pieces):
        t.feed(i, piece)
    return t


def test_whitespace_after_close_is_not_the_answer():
    t = feed(["<think>", "x", "</think>", "\n", "A"])
    assert t.reasoning and t.answer_at() == 4


def test_tags_split_across_chunks_and_answer_in_the_closing_chunk():
    assert feed(["<th", "ink>", "hm", "</", "think>ok"]).answer_at() == 4
    assert feed(["<think>hm</think>", "A"]).answer_at() == 1


def test_template_opened_block_only_close_streamed():
    t = feed(["Let me", " see", "</think>", "\n\n", "7"])
    assert t.reasoning and t.answer_at() == 4


def test_unclosed_block_has_no_answer_and_plain_text_answers_at_once():
    assert feed(["<think>", "still"]).answer_at() is None
    t = feed(["\n", "Hello", " there"])
    assert not t.reasoning and t.answer_at() == 1


def test_keeps_only_a_tag_sized_tail():
    t = feed(["SECRET-" * 1000, "</thi", "nk>", "x"])
    assert all(len(v) < len("</think>") for v in vars(t).values() if isinstance(v, str))
    assert t.answer_at() == 3


def _whole_text_answer(pieces: list[str]) -> tuple[bool, int | None]:
    """What ThinkTags should say, read off the joined text: the piece holding the first non-blank character after
    the first `</think>` (or, without one, after nothing unless `<think>` opened a block)."""
    text = "".join(pieces)
    ends = [sum(map(len, pieces[: i + 1])) for i in range(len(pieces))]
    close = text.find("</think>")
    if close >= 0:
        start = close + len("</think>")
    elif "<think>" in text:
        return True, None
    else:
        start = 0
    rest = text[start:]
    blank = len(rest) - len(rest.lstrip())
    if blank == len(rest):
        return close >= 0, None
    at = start + blank
    return close >= 0, next(i for i, end in enumerate(ends) if at < end)


_FRAGMENT = st.sampled_from(["<think>", "</think>", "<", "</", "think>", "x", "a<b", " ", "\n"])


@given(st.lists(_FRAGMENT, max_size=10), st.lists(st.integers(min_value=0, max_value=60), max_size=6))
def test_any_text_cut_anywhere_gives_what_the_whole_text_says(fragments, cuts):
    pieces = cut("".join(fragments), cuts)
    t = feed(pieces)
    assert (t.reasoning, t.answer_at()) == _whole_text_answer(pieces)
