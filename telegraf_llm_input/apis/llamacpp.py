"""llama.cpp's native `/completion` (also `/completions`): SSE `data:` events with `content` and `stop`.

The last event (`stop: true`) has `tokens_predicted`, `tokens_evaluated` and `timings` (prompt_ms,
predicted_per_second, cache_n, ...); not streamed it is the whole answer.
"""

from __future__ import annotations

from telegraf_llm_input.apis.base import Api, Piece, ProbeRequest, Stats, count, is_error, text
from telegraf_llm_input.apis.openai import timings_stats


def completion_piece(doc: object) -> Piece:
    if is_error(doc):
        return Piece(error=True)
    assert isinstance(doc, dict)
    stop = doc.get("stop") is True
    stats = timings_stats(doc.get("timings"))
    if stop:  # `tokens_predicted` first, `timings.predicted_n` when it says 0
        stats += (Stats("llamacpp", count(doc.get("tokens_evaluated")), count(doc.get("tokens_predicted")) or None),)
    return Piece(content=text(doc.get("content")), finished=stop, stats=stats)


def completion_body(r: ProbeRequest) -> dict[str, object]:
    body: dict[str, object] = {
        "prompt": r.prompt,
        "n_predict": r.max_tokens,
        "temperature": r.temperature,
        "stream": True,
    }
    if r.model:
        body["model"] = r.model
    return body


COMPLETION = Api(
    "llamacpp_completion",
    ("/completion", "/completions"),
    completion_piece,
    "sse",
    stream_default=False,
    server_type="llamacpp",
    build=completion_body,
)
APIS = (COMPLETION,)
