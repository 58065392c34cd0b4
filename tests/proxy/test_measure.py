"""What the proxy measures of one exchange, fed literal wire bytes at chosen times (no sockets, no clock)."""

from __future__ import annotations

import json

from telegraf_llm_input.apis import APIS
from telegraf_llm_input.proxy.measure import BODY_SNIFF, Meters, model_of, outcome_of

MS = 1_000_000
SSE = [(b"content-type", b"text/event-stream")]
NDJSON = [(b"content-type", b"application/x-ndjson")]


def sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chat(delta: dict, finish=None, usage=None) -> bytes:
    doc: dict = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        doc["usage"] = usage
    return sse(doc)


def run(meters: Meters, path: str, body: dict, headers, pieces: list[tuple[int, bytes]], end_ms: int, outcome="ok"):
    ex = meters.begin("POST", path, 0)
    ex.request_data(json.dumps(body).encode())
    ex.sent()
    ex.response(1 * MS, 200, headers)
    for t_ms, data in pieces:
        ex.data(t_ms * MS, data)
    ex.end(end_ms * MS, outcome)
    return meters.recent[-1]


def test_ttft_is_the_first_content_not_the_role_chunk_and_tokens_are_the_servers_usage():
    meters = Meters()
    pieces = [
        (5, chat({"role": "assistant", "content": ""})),
        (40, chat({"content": "Hel"})),
        (60, chat({"content": "lo"}) + chat({"content": "!"})),  # two chunks in one read
        (80, chat({}, "stop")),
        (81, sse({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4}}) + b"data: [DONE]\n\n"),
    ]
    m = run(meters, "/v1/chat/completions", {"model": "qwen", "stream": True}, SSE, pieces, 90)
    assert (m.model, m.api, m.outcome, m.streamed) == ("qwen", "openai_chat", "ok", True)
    assert m.ttft_s == 0.040 and m.ttfa_s == 0.040 and m.e2e_s == 0.090
    assert (m.prompt_tokens, m.output_tokens, m.counted, m.chunks) == (11, 4, "server", 3)
    assert abs(m.tpot_s - 0.020 / 3) < 1e-12  # (last - first token) / (tokens - 1)
    labels = ("qwen", "openai_chat")
    assert meters.ttft.count(labels) == 1 and meters.itl.count(labels) == 2  # gaps of 20 ms and 0 ms
    assert meters.gen_tokens.value((*labels, "server")) == 4 and meters.prompt_tokens.value(labels) == 11
    assert meters.requests.value((*labels, "ok", "200")) == 1
    assert meters.in_flight.value(labels) == 0


def test_time_to_first_answer_comes_after_the_thinking():
    meters = Meters()
    pieces = [
        (30, chat({"reasoning_content": "let me think"})),
        (50, chat({"reasoning_content": "more"})),
        (90, chat({"content": "42"})),
        (95, chat({}, "stop") + b"data: [DONE]\n\n"),
    ]
    m = run(meters, "/v1/chat/completions", {"model": "r1", "stream": True}, SSE, pieces, 100)
    assert m.ttft_s == 0.030 and m.ttfa_s == 0.090
    assert (m.output_tokens, m.counted) == (3, "chunks")  # no usage in this stream: chunks counted, and said so
    assert meters.gen_tokens.value(("r1", "openai_chat", "chunks")) == 3


def test_ollama_final_stats_give_tokens_and_load_duration():
    meters = Meters()
    line = lambda doc: (json.dumps(doc) + "\n").encode()  # noqa: E731
    final = {"done": True, "prompt_eval_count": 26, "eval_count": 2, "load_duration": 2_500_000_000}
    pieces = [
        (2600, line({"model": "llama3", "message": {"role": "assistant", "content": "Hi"}, "done": False})),
        (2650, line({"model": "llama3", "message": {"role": "assistant", "content": "!"}, "done": False})),
        (2700, line({"model": "llama3", "message": {"role": "assistant", "content": ""}, **final})),
    ]
    m = run(meters, "/api/chat", {"model": "llama3", "messages": []}, NDJSON, pieces, 2700)
    assert (m.prompt_tokens, m.output_tokens, m.counted, m.load_s) == (26, 2, "server", 2.5)
    assert m.ttft_s == 2.6
    assert meters.load.count(("llama3", "ollama_chat")) == 1


def test_a_non_streamed_answer_gives_tokens_and_e2e_but_no_ttft():
    meters = Meters()
    doc = {
        "choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 7},
    }
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json")]
    m = run(meters, "/v1/chat/completions", {"model": "q"}, headers, [(50, body[:10]), (51, body[10:])], 52)
    assert (m.streamed, m.ttft_s, m.output_tokens, m.prompt_tokens, m.e2e_s) == (False, None, 7, 3, 0.052)
    assert meters.ttft.count(("q", "openai_chat")) == 0 and meters.e2e.count(("q", "openai_chat")) == 1


def test_embeddings_are_kept_apart_from_generation():
    meters = Meters()
    doc = {"object": "list", "data": [{"embedding": [0.1]}], "usage": {"prompt_tokens": 5, "total_tokens": 5}}
    headers = [(b"content-type", b"application/json")]
    m = run(meters, "/v1/embeddings", {"model": "e5", "input": "x"}, headers, [(9, json.dumps(doc).encode())], 10)
    assert m.api == "openai_embeddings" and m.prompt_tokens == 5
    assert meters.embed_requests.value(("e5", "openai_embeddings", "ok", "200")) == 1
    assert meters.embed_tokens.value(("e5", "openai_embeddings")) == 5
    assert meters.requests.series == {} and meters.e2e.series == {}


def test_a_broken_stream_and_a_cancelled_one_are_told_apart():
    meters = Meters()
    broken = run(meters, "/v1/chat/completions", {"model": "q"}, SSE, [(5, b"data: {not json\n\n")], 6)
    assert broken.outcome == "stream_error"
    left = run(meters, "/v1/chat/completions", {"model": "q"}, SSE, [(5, chat({"content": "a"}))], 6, "cancelled")
    assert (left.outcome, left.output_tokens, left.counted) == ("cancelled", 1, "chunks")
    assert meters.requests.value(("q", "openai_chat", "cancelled", "200")) == 1
    # a client that closes as soon as it read `[DONE]` (before the chunked terminator) got the whole answer
    whole = [(5, chat({"content": "a"})), (6, chat({}, "stop") + b"data: [DONE]\n\n")]
    done = run(meters, "/v1/chat/completions", {"model": "q"}, SSE, whole, 7, "cancelled")
    assert done.outcome == "ok" and done.e2e_s == 0.007


def test_model_names_come_from_the_body_even_past_what_is_kept():
    api = APIS["openai_chat"]
    big = b'{"model": "llava:7b", "messages": [{"images": ["' + b"A" * (2 * BODY_SNIFF) + b'"]}]}'
    assert model_of(api, big[:BODY_SNIFF], whole=False) == "llava:7b"
    assert model_of(api, b'{"messages": []}', whole=True) == "unknown"
    assert model_of(api, b'{"model": "a\\"b"}', whole=True) == 'a"b'
    assert model_of(api, b'{"x": 1, "model": "a\\"b", "messages": ["', whole=False) == 'a"b'


def test_outcomes():
    assert outcome_of("ok", 200) == "ok" and outcome_of("ok", 404) == "http_4xx" and outcome_of("ok", 503) == "http_5xx"
    assert outcome_of("cancelled", 200) == "cancelled" and outcome_of("refused", None) == "upstream_refused"


def test_client_invented_model_names_cannot_grow_the_page_without_bound():
    meters = Meters()
    for i in range(1000):
        run(meters, "/v1/chat/completions", {"model": f"m{i}"}, SSE, [(5, chat({"content": "a"}))], 6)
    assert len(meters.requests.series) <= 257
    assert meters.requests.value(("other", "openai_chat", "stream_error", "200")) > 0
