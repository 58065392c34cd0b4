"""The one walker of stream events: what the probe and the proxy both read an answer's times and counts from."""

from __future__ import annotations

from telegraf_llm_input.apis import APIS
from telegraf_llm_input.apis.base import Answer, NoAnswer, Stats, StreamError, Token
from telegraf_llm_input.apis.reader import StreamReader
from telegraf_llm_input.apis.timeline import Timeline


def test_times_are_those_of_the_reads_that_carried_them():
    t = Timeline()
    assert t.apply(1, [Stats("usage", prompt_tokens=3)]) == 0  # a role-only read: no token yet
    assert t.apply(5, [Token(first=True, reasoning=True), Answer(), NoAnswer()]) == 1
    assert t.apply(9, [Token(first=False), Token(first=False), Answer()]) == 2
    assert (t.first_ns, t.last_ns, t.answer_ns) == (5, 9, 9)
    assert not t.finished and t.bad is None
    t.apply(10, [StreamError("bad JSON")])
    assert t.bad == "bad JSON"


def test_the_servers_count_usage_first_then_ollama_then_llamacpp():
    t = Timeline()
    t.apply(1, [Stats("llamacpp", output_tokens=7), Stats("usage", prompt_tokens=4)])
    assert t.output_tokens() == ("llamacpp", 7) and t.prompt_tokens() == 4
    t.apply(2, [Stats("usage", output_tokens=8)])  # merged into the earlier usage object
    assert t.output_tokens() == ("usage", 8) and t.stats["usage"].prompt_tokens == 4


def test_a_real_stream_read_through_the_reader():
    reader, t = StreamReader(APIS["openai_chat"]), Timeline()
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
    tok = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    end = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":2}}\n\ndata: [DONE]\n\n'
    for t_ns, chunk in ((10, role), (20, tok), (30, tok + end)):
        t.apply(t_ns, reader.feed(chunk))
    t.apply(40, reader.finish())
    assert (t.first_ns, t.last_ns, t.finished) == (20, 30, True)
    assert t.output_tokens() == ("usage", 2)
