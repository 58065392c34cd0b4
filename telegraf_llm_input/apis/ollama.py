"""Ollama's native API: `/api/chat`, `/api/generate` (NDJSON, streamed unless `"stream": false`), `/api/embed`.

Each line is a JSON object with `message.content`/`message.thinking` (chat) or `response`/`thinking`
(generate); the last one has `done: true` and the server's numbers: `prompt_eval_count`, `eval_count` and
durations in ns (`load_duration`, `prompt_eval_duration`, `eval_duration`, `total_duration`). Go's `omitempty`
drops zero values, so an absent count or duration means 0. Only this API takes `keep_alive`, which
the probe never sends (`probe/watch.py`).
"""

from __future__ import annotations

from telegraf_llm_input.apis.base import Api, Piece, ProbeRequest, Stats, count, is_error, number, obj, text


def final_stats(doc: dict[str, object]) -> Stats:
    """The numbers of a `done: true` object (or an `/api/embed` answer); absent means 0."""
    return Stats(
        "ollama",
        prompt_tokens=count(doc.get("prompt_eval_count")) or 0,
        output_tokens=count(doc.get("eval_count")) or 0,
        load_ns=number(doc.get("load_duration")) or 0.0,
        prompt_eval_ns=number(doc.get("prompt_eval_duration")) or 0.0,
        eval_ns=number(doc.get("eval_duration")) or 0.0,
        total_ns=number(doc.get("total_duration")) or 0.0,
    )


def native_piece(doc: object) -> Piece:
    """One `/api/chat` or `/api/generate` object (the same reader serves both shapes)."""
    if is_error(doc):
        return Piece(error=True)  # `{"error": "..."}` mid-stream
    assert isinstance(doc, dict)
    message = obj(doc.get("message"))
    done = doc.get("done") is True
    return Piece(
        text(message.get("content")) or text(doc.get("response")),
        text(message.get("thinking")) or text(doc.get("thinking")),
        bool(message.get("tool_calls")),
        done,
        (final_stats(doc),) if done else (),
    )


def embed_piece(doc: object) -> Piece:
    if is_error(doc):
        return Piece(error=True)
    assert isinstance(doc, dict)
    return Piece(finished=True, stats=(final_stats(doc),))


def chat_body(r: ProbeRequest) -> dict[str, object]:
    body: dict[str, object] = {
        "messages": r.messages,
        "stream": True,
        "options": {"temperature": r.temperature, "num_predict": r.max_tokens},
    }
    if r.model:
        body["model"] = r.model
    return body


CHAT = Api(
    "ollama_chat",
    ("/api/chat",),
    native_piece,
    "ndjson",
    stream_default=True,
    server_type="ollama",
    build=chat_body,
    takes_messages=True,
)
GENERATE = Api("ollama_generate", ("/api/generate",), native_piece, "ndjson", True, server_type="ollama")
EMBED = Api("ollama_embed", ("/api/embed",), embed_piece, "json", False, "embed", server_type="ollama")
APIS = (CHAT, GENERATE, EMBED)
PROBE_MARK = "telegraf-llm-input-probe=1"
"""The query the probe puts on its Ollama requests (Ollama ignores it; gin logs the path with its query), so a log
reader drops every probe, also one sent by another process (a `top` beside the agent)."""
