"""The stream reader: wire bytes of each API in, events out as they complete; counts kept, text never."""

import json

from telegraf_llm_input.apis import APIS
from telegraf_llm_input.apis.base import Answer, Finished, NoAnswer, Stats, StreamError, Token
from telegraf_llm_input.apis.reader import StreamReader

SECRET = "PRIVATE-ANSWER-TEXT"


def sse(*objs):
    return b"".join(b"data: " + (o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n\n" for o in objs)


def ndjson(*objs):
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def read(api, wire, stream=True, step=1):
    """Events per read, the wire cut into `step`-byte reads; the last list is finish()'s."""
    reader = StreamReader(APIS[api], stream)
    out = [reader.feed(wire[i : i + step]) for i in range(0, len(wire), step)]
    return reader, [e for events in out for e in events] + reader.finish()


def kinds(events):
    return [type(e).__name__ for e in events]


def chat(delta, finish=None, **extra):
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_openai_chat_events_in_order_and_no_text_kept():
    wire = sse(
        chat({"role": "assistant", "content": ""}),
        chat({"reasoning_content": SECRET}),
        chat({"content": "\n"}),
        chat({"content": SECRET}),
        chat({}, "stop"),
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}},
        b"[DONE]",
    )
    reader, events = read("openai_chat", wire)
    assert kinds(events) == ["Token", "Token", "Token", "Answer", "Finished", "Stats", "Finished"]
    assert events[0] == Token(first=True, reasoning=True) and events[2] == Token(first=False)
    assert events[5] == Stats("usage", prompt_tokens=5, output_tokens=3)
    assert reader.tokens == 3 and reader.chunks == 6 and reader.reasoning
    assert SECRET not in repr(vars(reader)) and SECRET not in repr(events)


def test_each_event_comes_with_the_read_that_completes_it():
    reader = StreamReader(APIS["ollama_chat"])
    line = json.dumps({"message": {"role": "assistant", "content": "hi"}, "done": False}).encode() + b"\n"
    assert reader.feed(line[:-1]) == []
    assert kinds(reader.feed(line[-1:])) == ["Token", "Answer"]


def test_ollama_final_stats_and_unterminated_last_line():
    wire = ndjson({"message": {"content": "a"}, "done": False})
    last = {"done": True, "eval_count": 2, "eval_duration": 10_000_000, "load_duration": 5}
    reader, events = read("ollama_chat", wire + json.dumps(last).encode(), step=7)
    assert kinds(events) == ["Token", "Answer", "Stats", "Finished"]
    stats = events[2]
    assert stats.origin == "ollama" and stats.output_tokens == 2 and stats.prompt_tokens == 0
    assert stats.load_ns == 5 and stats.prompt_eval_ns == 0.0 and stats.eval_ns == 10_000_000


def test_lone_close_tag_takes_the_answer_back_then_moves_it():
    wire = sse(chat({"content": "thinking"}), chat({"content": "</think>"}), chat({"content": "42"}), b"[DONE]")
    _, events = read("openai_chat", wire)
    assert kinds(events) == ["Token", "Answer", "Token", "NoAnswer", "Token", "Answer", "Finished"]


def test_malformed_and_error_objects_end_the_reading():
    _, events = read("openai_chat", sse(chat({"content": "a"})) + b"data: {nope\n\n" + sse(chat({"content": "b"})))
    assert events[-1] == StreamError("malformed JSON in stream chunk 2") and kinds(events).count("Token") == 1
    _, events = read("ollama_generate", ndjson({"response": "a", "done": False}, {"error": "boom"}))
    assert events[-1] == StreamError("server reported an error in stream chunk 2")


def test_not_streamed_documents_are_read_at_the_end():
    doc = {
        "choices": [{"index": 0, "message": {"content": SECRET, "reasoning_content": "r"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 9},
    }
    reader, events = read("openai_chat", json.dumps(doc).encode(), stream=False, step=5)
    assert kinds(events) == ["Token", "Answer", "Stats", "Finished"] and events[2].output_tokens == 9
    _, events = read("ollama_embed", json.dumps({"embeddings": [[0.1]], "prompt_eval_count": 6}).encode(), False)
    assert events[0].prompt_tokens == 6 and events[0].output_tokens == 0 and isinstance(events[1], Finished)
    _, events = read("openai_embeddings", json.dumps({"data": [], "usage": {"prompt_tokens": 3}}).encode(), False)
    assert events == [Stats("usage", prompt_tokens=3), Finished()]


def test_a_too_large_document_is_not_read():
    reader = StreamReader(APIS["openai_embeddings"], stream=False, max_document_bytes=10)
    assert kinds(reader.feed(b"x" * 11)) == ["StreamError"] and reader.finish() == []


def test_responses_api_stream():
    wire = sse(
        {"type": "response.created", "response": {"id": "r", "error": None}},
        {"type": "response.reasoning_summary_text.delta", "delta": "hm"},
        {"type": "response.output_text.delta", "delta": SECRET},
        {
            "type": "response.completed",
            "response": {
                "usage": {"input_tokens": 8, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}}
            },
        },
    )
    reader, events = read("openai_responses", wire)
    assert kinds(events) == ["Token", "Token", "Answer", "Stats", "Finished"]
    assert events[3] == Stats("usage", prompt_tokens=8, output_tokens=5, reasoning_tokens=2)
    _, events = read("openai_responses", sse({"type": "response.failed", "response": {}}))
    assert kinds(events) == ["StreamError"]


def test_llamacpp_native_stop_object():
    timings = {"prompt_ms": 3.0, "predicted_per_second": 75.0, "cache_n": 8, "predicted_n": 3}
    wire = sse(
        {"content": "a", "stop": False},
        {"content": "", "stop": True, "tokens_predicted": 3, "tokens_evaluated": 9, "timings": timings},
    )
    _, events = read("llamacpp_completion", wire)
    stats = [e for e in events if isinstance(e, Stats)]
    merged = stats[0].merged(stats[1])
    assert merged == Stats("llamacpp", 9, 3, prefill_ms=3.0, decode_tokens_per_s=75.0, cache_tokens=8)
    assert kinds(events)[-1] == "Finished" and not any(isinstance(e, (NoAnswer, StreamError)) for e in events)
    assert Answer() in events
