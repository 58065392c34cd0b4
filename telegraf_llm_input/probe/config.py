"""A target's `probe:` block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from telegraf_llm_input.configtypes import Duration

MAX_TOKENS_CAP = 1024


@dataclass
class ProbeConfig:
    enabled: bool = False
    """Off by default: a probe costs GPU time on the user's server."""
    every: Duration = 60.0
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    max_tokens: int = 64
    temperature: float = 0.0
    model: str | None = None
    """Default: discovered from the server."""
    timeout: Duration = 60.0
    api: Literal["openai_chat", "openai_completions", "ollama", "llamacpp", "lmstudio"] = "openai_chat"
    """Wire API: OpenAI chat/completions streaming, Ollama `/api/chat` NDJSON, llama.cpp `/completion`, LM Studio's
    `/api/v0/chat/completions` (OpenAI-shaped, plus its `stats`)."""

    def __post_init__(self) -> None:
        if self.prompt is not None and self.messages is not None:
            raise ValueError("give either prompt or messages, not both")
        if not 1 <= self.max_tokens <= MAX_TOKENS_CAP:
            raise ValueError(f"max_tokens must be between 1 and {MAX_TOKENS_CAP}")
        if self.every <= 0:
            raise ValueError("every must be > 0")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        if self.messages is not None and self.api in ("openai_completions", "llamacpp"):
            raise ValueError(f"api {self.api} takes a plain prompt, not messages")
        if self.messages is not None and not self.messages:
            raise ValueError("messages must not be empty")
