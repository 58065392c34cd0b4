"""Inline `<think>` tags: where the answer starts, seeing each chunk once and keeping no text."""

from telegraf_llm_input.apis.think import ThinkTags


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
