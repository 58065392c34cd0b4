"""Any OpenAI-compatible server (LM Studio, mlx, proxies): `/v1/models` says it is up and which models."""

from __future__ import annotations

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.servers.base import Fetcher, ModelReading, Reading, Rule

TYPE = "openai"
NAME = "OpenAI-compatible"


class OpenAIAdapter:
    def __init__(self, server_type: str = TYPE):
        self.server_type = server_type

    async def read(self, fetch: Fetcher) -> Reading:
        data = await fetch.json("/v1/models")
        ids = [m.get("id") for m in (data.get("data") or []) if isinstance(m, dict)] if isinstance(data, dict) else []
        return Reading([ModelReading(i) for i in ids if isinstance(i, str) and i], server_type=self.server_type)


def make(target: TargetConfig) -> OpenAIAdapter:
    return OpenAIAdapter()


DETECT = (Rule("/v1/models", list_key="data"),)
"""Last in the detection order: many servers also answer `/v1/models`."""
