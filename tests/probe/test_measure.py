"""The pure measurement: literal chunk sequences in the shapes real servers send, no sockets."""

import json

import pytest

from telegraf_llm_input.apis import PROBE_APIS
from telegraf_llm_input.probe.measure import StreamMeasure

MS = 1_000_000
T0 = 5_000 * MS  # monotonic clocks start anywhere


def chat(delta=None, finish=None, usage=None, choices=True, **extra):
    obj = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m"}
    obj["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []
    if usage is not None:
        obj["usage"] = usage
    obj.update(extra)
    return json.dumps(obj)


def frame(api, data):
    """One payload as it is on the wire: an NDJSON line or an SSE event."""
    return (data + "\n" if PROBE_APIS[api].framing == "ndjson" else f"data: {data}\n\n").encode()


def measure(api, events, end_ms=None, **finish):
    """The result from payloads; the same events sent as wire bytes cut into 3-byte reads give the same result."""
    end = T0 + int((end_ms if end_ms is not None else (events[-1][0] if events else 0)) * MS)
    by_payload = StreamMeasure(api, T0, http_status=200)
    by_bytes = StreamMeasure(api, T0, http_status=200)
    for t_ms, data in events:
        by_payload.feed(T0 + int(t_ms * MS), data)
        wire = frame(api, data)
        for i in range(0, len(wire), 3):
            by_bytes.receive(T0 + int(t_ms * MS), wire[i : i + 3])
    result = by_payload.finish(end, **finish)
    assert by_bytes.finish(end, **finish) == result
    return result


def test_vllm_shape_role_chunk_then_tokens_then_separate_usage_chunk():
    events = [(1, chat({"role": "assistant", "content": ""}))]
    events += [(200 + 20 * i, chat({"content": f"t{i}"})) for i in range(10)]
    events += [
        (380, chat({}, finish="stop")),
        (381, chat(choices=False, usage={"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22})),
        (382, "[DONE]"),
    ]
    r = measure("openai_chat", events)
    assert r.success and r.error is None
    assert r.ttft_ms == pytest.approx(200)
    assert r.ttfa_ms == pytest.approx(200)
    assert r.reasoning is False and r.reasoning_ms is None
    assert r.output_tokens == 10 and r.output_tokens_source == "usage"
    assert r.prompt_tokens == 12
    assert r.tpot_ms == pytest.approx(20)
    assert r.tokens_per_s == pytest.approx(50)
    assert r.e2e_ms == pytest.approx(382)


def test_llamacpp_shape_null_content_first_and_usage_in_final_choice_chunk():
    events = [
        (200, chat({"role": "assistant", "content": None})),
        (200, chat({"content": "a"})),
        (220, chat({"content": "b"})),
        (240, chat({"content": "c"})),
        (
            241,
            chat(
                {},
                finish="stop",
                usage={"completion_tokens": 3, "prompt_tokens": 5},
                timings={
                    "cache_n": 4,
                    "prompt_n": 1,
                    "prompt_ms": 12.5,
                    "predicted_n": 3,
                    "predicted_ms": 40.0,
                    "predicted_per_second": 75.0,
                },
            ),
        ),
        (242, "[DONE]"),
    ]
    r = measure("openai_chat", events)
    assert r.success
    assert r.ttft_ms == pytest.approx(200)
    assert r.output_tokens == 3 and r.prompt_tokens == 5
    assert r.tpot_ms == pytest.approx(20)
    assert r.server_prefill_ms == 12.5 and r.server_decode_tokens_per_s == 75.0 and r.cache_tokens == 4


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_reasoning_field_then_answer(field):
    events = [(0, chat({"role": "assistant", "content": ""}))]
    events += [(200 + 20 * i, chat({field: f"r{i}"})) for i in range(5)]  # 200..280
    events += [(300, chat({"content": "\n\n"}))]  # whitespace is not the answer yet
    events += [(320 + 20 * i, chat({"content": f"a{i}"})) for i in range(3)]  # 320..360
    events += [
        (361, chat({}, finish="stop")),
        (
            362,
            chat(
                choices=False,
                usage={
                    "completion_tokens": 9,
                    "prompt_tokens": 7,
                    "completion_tokens_details": {"reasoning_tokens": 5},
                },
            ),
        ),
        (363, "[DONE]"),
    ]
    r = measure("openai_chat", events)
    assert r.success and r.reasoning is True
    assert r.ttft_ms == pytest.approx(200)
    assert r.ttfa_ms == pytest.approx(320)
    assert r.reasoning_ms == pytest.approx(120)
    assert r.reasoning_tokens == 5 and r.output_tokens == 9


def test_inline_think_tags_answer_starts_after_close_tag():
    events = [
        (200, chat({"content": "<think>"})),
        (220, chat({"content": "hmm"})),
        (240, chat({"content": "</"})),
        (260, chat({"content": "think>\n\n"})),  # tag split across chunks
        (280, chat({"content": "42"})),
        (281, chat({}, finish="stop")),
        (282, "[DONE]"),
    ]
    r = measure("openai_chat", events)
    assert r.success and r.reasoning is True
    assert r.ttft_ms == pytest.approx(200)
    assert r.ttfa_ms == pytest.approx(280)
    assert r.reasoning_ms == pytest.approx(80)
    assert r.output_tokens == 5 and r.output_tokens_source == "chunks"


def test_answer_in_same_chunk_as_close_tag():
    events = [
        (200, chat({"content": "<think>x"})),
        (240, chat({"content": "</think>Yes"})),
        (241, chat({}, finish="stop")),
    ]
    r = measure("openai_chat", events)
    assert r.ttfa_ms == pytest.approx(240) and r.reasoning_ms == pytest.approx(40)


def test_think_opened_by_the_template_only_close_tag_streamed():
    events = [
        (200, chat({"content": "Let me"})),
        (220, chat({"content": " think"})),
        (240, chat({"content": "</think>"})),
        (260, chat({"content": "Done"})),
        (261, "[DONE]"),
    ]
    r = measure("openai_chat", events)
    assert r.success and r.reasoning is True
    assert r.ttft_ms == pytest.approx(200) and r.ttfa_ms == pytest.approx(260)


def test_reasoning_cut_by_max_tokens_has_no_answer_time():
    events = [
        (200, chat({"content": "<think>"})),
        (220, chat({"content": "still"})),
        (221, chat({}, finish="length")),
        (222, "[DONE]"),
    ]
    r = measure("openai_chat", events)
    assert r.success and r.reasoning is True
    assert r.ttft_ms == pytest.approx(200)
    assert r.ttfa_ms is None and r.reasoning_ms is None
    assert "ttfa_ms" not in r.fields()


def test_tool_call_counts_as_first_token():
    events = [
        (0, chat({"role": "assistant", "content": "", "tool_calls": []})),
        (150, chat({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]})),
        (170, chat({}, finish="tool_calls")),
        (171, "[DONE]"),
    ]
    r = measure("openai_chat", events)
    assert r.success and r.ttft_ms == pytest.approx(150)
    assert r.ttfa_ms is None


def test_missing_done_marker_is_fine_when_finish_reason_was_sent():
    events = [(200, chat({"content": "a"})), (220, chat({"content": "b"}, finish="stop"))]
    assert measure("openai_chat", events).success


def test_stream_that_stops_without_finish_or_done_is_bad_stream():
    r = measure("openai_chat", [(200, chat({"content": "a"})), (220, chat({"content": "b"}))])
    assert not r.success and r.error == "bad_stream"
    assert r.ttft_ms == pytest.approx(200)  # what was measured before the cut is kept


def test_malformed_json_chunk_is_bad_stream():
    r = measure("openai_chat", [(200, chat({"content": "a"})), (220, '{"choices": [{"delta": '), (240, "[DONE]")])
    assert r.error == "bad_stream" and "malformed JSON" in r.detail and "choices" not in r.detail


def test_error_object_mid_stream_is_bad_stream():
    r = measure(
        "openai_chat", [(200, chat({"content": "a"})), (220, json.dumps({"error": {"message": "boom", "code": 500}}))]
    )
    assert r.error == "bad_stream" and "boom" not in r.detail


def test_no_text_is_empty():
    r = measure(
        "openai_chat", [(0, chat({"role": "assistant", "content": None})), (5, chat({}, finish="stop")), (6, "[DONE]")]
    )
    assert not r.success and r.error == "empty"
    assert r.ttft_ms is None and r.fields()["success"] == 0


def test_transport_error_wins():
    r = measure("openai_chat", [(200, chat({"content": "a"}))], end_ms=900, error="timeout", detail="no data for 0.5s")
    assert r.error == "timeout" and r.e2e_ms == pytest.approx(900) and r.ttft_ms == pytest.approx(200)


def test_openai_completions_text_chunks_and_usage():
    def cmpl(text, finish=None, usage=None):
        obj = {"object": "text_completion", "choices": [{"text": text, "index": 0, "finish_reason": finish}]}
        if usage:
            obj["usage"] = usage
        return json.dumps(obj)

    events = [
        (100, cmpl("x")),
        (110, cmpl("y")),
        (120, cmpl("", "stop")),
        (121, json.dumps({"choices": [], "usage": {"completion_tokens": 2, "prompt_tokens": 3}})),
        (122, "[DONE]"),
    ]
    r = measure("openai_completions", events)
    assert r.success and r.ttft_ms == pytest.approx(100) and r.tpot_ms == pytest.approx(10)
    assert r.output_tokens == 2 and r.prompt_tokens == 3


def test_ollama_usage_zero_on_every_chunk_then_real_usage_last_wins():
    events = [
        (
            100,
            json.dumps(
                {
                    "choices": [{"text": "x", "index": 0, "finish_reason": None}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                }
            ),
        ),
        (101, json.dumps({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}})),
        (102, "[DONE]"),
    ]
    r = measure("openai_completions", events)
    assert r.output_tokens == 1 and r.prompt_tokens == 4 and r.output_tokens_source == "usage"


def ollama(content="", thinking="", done=False, **final):
    obj = {
        "model": "qwen3:0.6b",
        "created_at": "2025-10-26T17:15:24.097767Z",
        "message": {"role": "assistant", "content": content},
        "done": done,
    }
    if thinking:
        obj["message"]["thinking"] = thinking
    obj.update(final)
    return json.dumps(obj)


def test_ollama_chat_ndjson_final_object():
    events = [
        (300, ollama(thinking="hm")),
        (320, ollama(thinking="m")),
        (340, ollama("Hi")),
        (360, ollama("!")),
        (
            361,
            ollama(
                done=True,
                done_reason="stop",
                total_duration=361_000_000,
                load_duration=150_000_000,
                prompt_eval_count=26,
                prompt_eval_duration=40_000_000,
                eval_count=4,
                eval_duration=80_000_000,
            ),
        ),
    ]
    r = measure("ollama", events)
    assert r.success and r.reasoning is True
    assert r.ttft_ms == pytest.approx(300) and r.ttfa_ms == pytest.approx(340)
    assert r.output_tokens == 4 and r.output_tokens_source == "server" and r.prompt_tokens == 26
    assert r.load_ms == pytest.approx(150) and r.server_prefill_ms == pytest.approx(40)
    assert r.server_decode_tokens_per_s == pytest.approx(50)


def test_ollama_zero_values_are_omitted_and_mean_zero():
    events = [
        (50, ollama("a")),
        (60, ollama("b")),
        (61, ollama(done=True, done_reason="stop", eval_count=2, eval_duration=10_000_000)),
    ]
    r = measure("ollama", events)
    assert r.load_ms == 0.0 and r.server_prefill_ms == 0.0 and r.prompt_tokens == 0
    assert r.server_decode_tokens_per_s == pytest.approx(200)


def test_ollama_generate_uses_response_field():
    events = [
        (50, json.dumps({"model": "m", "response": "The", "done": False})),
        (70, json.dumps({"model": "m", "response": "", "done": True, "eval_count": 1})),
    ]
    r = measure("ollama", events)
    assert r.success and r.ttft_ms == pytest.approx(50) and r.output_tokens == 1


def test_ollama_error_line_mid_stream():
    r = measure("ollama", [(50, ollama("a")), (60, json.dumps({"error": "an error was encountered"}))])
    assert r.error == "bad_stream"


def test_llamacpp_completion_stream_with_timings():
    def part(content, stop=False, **extra):
        return json.dumps(
            {
                "index": 0,
                "content": content,
                "tokens": [],
                "stop": stop,
                "id_slot": 0,
                "tokens_predicted": 0,
                "tokens_evaluated": 9,
                **extra,
            }
        )

    events = [
        (200, part("a")),
        (220, part("b")),
        (240, part("c")),
        (
            241,
            part(
                "",
                stop=True,
                tokens_predicted=3,
                tokens_evaluated=9,
                stop_type="eos",
                timings={
                    "cache_n": 8,
                    "prompt_n": 1,
                    "prompt_ms": 3.0,
                    "prompt_per_token_ms": 3.0,
                    "prompt_per_second": 333.3,
                    "predicted_n": 3,
                    "predicted_ms": 40.0,
                    "predicted_per_token_ms": 13.3,
                    "predicted_per_second": 75.0,
                },
            ),
        ),
    ]
    r = measure("llamacpp", events)
    assert r.success and r.ttft_ms == pytest.approx(200)
    assert r.output_tokens == 3 and r.output_tokens_source == "server" and r.prompt_tokens == 9
    assert r.server_prefill_ms == 3.0 and r.server_decode_tokens_per_s == 75.0 and r.cache_tokens == 8
    assert r.tpot_ms == pytest.approx(20)


def test_fields_are_numbers_only_and_skip_unknowns():
    r = measure("openai_chat", [(200, chat({"content": "a"})), (201, "[DONE]")])
    fields = r.fields()
    assert fields["success"] == 1 and fields["reasoning"] == 0 and fields["output_tokens"] == 1
    assert "tpot_ms" not in fields  # one token: no inter-token time
    assert all(isinstance(v, (int, float)) for v in fields.values())
