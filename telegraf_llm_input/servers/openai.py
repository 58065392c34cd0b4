"""Any OpenAI-compatible server (LM Studio, mlx, proxies): `/v1/models` says it is up and which models."""

from __future__ import annotations

from telegraf_llm_input.sources.server import Fetcher, ModelReading, Reading
from telegraf_llm_input.targets import TargetConfig

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


async def detect(answers) -> bool:
    data = await answers.json("/v1/models")
    return isinstance(data, dict) and isinstance(data.get("data"), list)
