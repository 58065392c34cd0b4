"""`mlx_lm.server` (Apple MLX): OpenAI-compatible (`/v1/models`, `/v1/chat/completions`), no metrics page.

It answers like any OpenAI-compatible server, so `type: auto` reports it as `openai`; `type: mlx` names it.
"""

from __future__ import annotations

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.servers.openai import OpenAIAdapter

TYPE = "mlx"
NAME = "MLX"


def make(target: TargetConfig) -> OpenAIAdapter:
    return OpenAIAdapter(server_type=TYPE)
