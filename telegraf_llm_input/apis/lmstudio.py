"""LM Studio's REST API `/api/v0/chat/completions`: OpenAI-shaped SSE, plus `stats` (its own TTFT, tokens/s)."""

from __future__ import annotations

from telegraf_llm_input.apis.base import Api
from telegraf_llm_input.apis.openai import chat_body, chat_piece

CHAT = Api(
    "lmstudio_chat",
    ("/api/v0/chat/completions",),
    chat_piece,
    "sse",
    stream_default=False,
    server_type="lmstudio",
    build=chat_body,
    takes_messages=True,
)
APIS = (CHAT,)
