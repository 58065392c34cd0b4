"""OpenAI-compatible APIs (vLLM, SGLang, TGI, llama.cpp, Ollama's and LM Studio's `/v1`, mlx, gateways).

Streamed as SSE `data:` events ending in `data: [DONE]`; not streamed (the default) as one JSON document.
Chat and completions carry `choices[]` (`delta` when streamed, `message` when not); usage comes in the last
choice chunk or in a separate `choices: []` chunk when asked for with `stream_options.include_usage`. The
Responses API streams typed events (`response.output_text.delta`, ..., `response.completed` with its usage).
"""

from __future__ import annotations

from telegraf_llm_input.apis.base import Api, Piece, ProbeRequest, Stats, count, is_error, number, obj, text


def usage_stats(doc: object) -> tuple[Stats, ...]:
    """An OpenAI `usage` object (chat/completions names; the Responses API's `input_`/`output_tokens` too)."""
    if not isinstance(doc, dict):
        return ()
    details = obj(doc.get("completion_tokens_details")) or obj(doc.get("output_tokens_details"))
    prompt = doc["prompt_tokens"] if "prompt_tokens" in doc else doc.get("input_tokens")
    output = doc["completion_tokens"] if "completion_tokens" in doc else doc.get("output_tokens")
    return (Stats("usage", count(prompt), count(output), count(details.get("reasoning_tokens"))),)


def timings_stats(doc: object) -> tuple[Stats, ...]:
    """llama.cpp `timings` (also on its OpenAI-compatible answers)."""
    if not isinstance(doc, dict):
        return ()
    return (
        Stats(
            "llamacpp",
            output_tokens=count(doc.get("predicted_n")),
            prefill_ms=number(doc.get("prompt_ms")),
            decode_tokens_per_s=number(doc.get("predicted_per_second")),
            cache_tokens=count(doc.get("cache_n")),
        ),
    )


def lmstudio_stats(doc: object) -> tuple[Stats, ...]:
    """LM Studio REST `stats`: time to first token as the server measured it (seconds) and its decode rate."""
    if not isinstance(doc, dict):
        return ()
    ttft_s = number(doc.get("time_to_first_token"))
    return (
        Stats(
            "lmstudio",
            prefill_ms=None if ttft_s is None else ttft_s * 1000.0,
            decode_tokens_per_s=number(doc.get("tokens_per_second")),
        ),
    )


def _extras(doc: dict[str, object]) -> tuple[Stats, ...]:
    if "usage" not in doc and "timings" not in doc and "stats" not in doc:  # most chunks: none
        return ()
    if "timings" not in doc and "stats" not in doc:  # OpenAI's last chunk
        return usage_stats(doc["usage"])
    return usage_stats(doc.get("usage")) + timings_stats(doc.get("timings")) + lmstudio_stats(doc.get("stats"))


_ERROR = Piece(error=True)


def _choices(doc: object, completions: bool) -> Piece:
    """Read on every chunk a proxy forwards, so written for speed: JSON gives exact types, `type() is` is enough."""
    if is_error(doc):
        return _ERROR
    assert isinstance(doc, dict)
    content = reasoning = ""
    tool = finished = False
    choices = doc.get("choices")
    for choice in choices if type(choices) is list else ():
        if type(choice) is not dict:
            continue
        if choice.get("finish_reason") is not None:
            finished = True
        if completions:
            value = choice.get("text")
            if type(value) is str:
                content += value
            continue
        delta = choice.get("delta")
        if not delta or type(delta) is not dict:
            delta = choice.get("message")
            if type(delta) is not dict:
                continue
        value = delta.get("content")
        if type(value) is str:
            content += value
        # vLLM (current), Ollama and mlx say `reasoning`; llama.cpp, SGLang, LM Studio and older vLLM `reasoning_content`.
        value = delta.get("reasoning")
        if not value or type(value) is not str:
            value = delta.get("reasoning_content")
        if type(value) is str:
            reasoning += value
        if not tool and delta.get("tool_calls"):
            tool = True
    return Piece(content, reasoning, tool, finished, _extras(doc))


def chat_piece(doc: object) -> Piece:
    return _choices(doc, completions=False)


def completions_piece(doc: object) -> Piece:
    return _choices(doc, completions=True)


def embeddings_piece(doc: object) -> Piece:
    if is_error(doc):
        return Piece(error=True)
    assert isinstance(doc, dict)
    return Piece(finished=True, stats=usage_stats(doc.get("usage")))


_RESPONSE_END = ("response.completed", "response.incomplete")


def responses_piece(doc: object) -> Piece:
    """A Responses API stream event, or (not streamed) the whole `response` object."""
    if is_error(doc):
        return Piece(error=True)
    assert isinstance(doc, dict)
    kind = text(doc.get("type"))
    if kind in ("error", "response.failed"):
        return Piece(error=True)
    if kind == "response.output_text.delta":
        return Piece(content=text(doc.get("delta")))
    if kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
        return Piece(reasoning=text(doc.get("delta")))
    if kind == "response.function_call_arguments.delta":
        return Piece(tool_call=True)
    if kind in _RESPONSE_END:
        return Piece(finished=True, stats=usage_stats(obj(doc.get("response")).get("usage")))
    if doc.get("object") == "response":  # not streamed
        content: list[str] = []
        reasoning: list[str] = []
        tool = False
        output = doc.get("output")
        for item in output if isinstance(output, list) else ():
            item = obj(item)
            parts = item.get("content") if item.get("type") == "message" else item.get("summary")
            for part in parts if isinstance(parts, list) else ():
                (content if item.get("type") == "message" else reasoning).append(text(obj(part).get("text")))
            tool = tool or item.get("type") == "function_call"
        return Piece("".join(content), "".join(reasoning), tool, True, usage_stats(doc.get("usage")))
    return Piece()


def _sampling(r: ProbeRequest) -> dict[str, object]:
    return {
        "max_tokens": r.max_tokens,
        "temperature": r.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _model(body: dict[str, object], r: ProbeRequest) -> dict[str, object]:
    if r.model:
        body["model"] = r.model
    return body


def chat_body(r: ProbeRequest) -> dict[str, object]:
    return _model({"messages": r.messages, **_sampling(r)}, r)


def completions_body(r: ProbeRequest) -> dict[str, object]:
    return _model({"prompt": r.prompt, **_sampling(r)}, r)


CHAT = Api(
    "openai_chat",
    ("/v1/chat/completions", "/chat/completions"),
    chat_piece,
    "sse",
    stream_default=False,
    build=chat_body,
    takes_messages=True,
)
COMPLETIONS = Api(
    "openai_completions",
    ("/v1/completions",),
    completions_piece,
    "sse",
    stream_default=False,
    build=completions_body,
)
EMBEDDINGS = Api("openai_embeddings", ("/v1/embeddings", "/embeddings"), embeddings_piece, "json", False, "embed")
RESPONSES = Api("openai_responses", ("/v1/responses", "/responses"), responses_piece, "sse", stream_default=False)
APIS = (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES)
