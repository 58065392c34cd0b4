"""LM Studio: its own REST API (0.3.6+) says which models are loaded, their quantization and max context.

`GET /api/v0/models` -> `{"object": "list", "data": [{"id", "type" (llm/vlm/embeddings), "publisher",
"arch", "compatibility_type" (gguf/mlx), "quantization", "state" ("loaded"/"not-loaded"),
"max_context_length"}]}`. No metrics page; latency comes from the probe (`api: lmstudio` adds its `stats`).
"""

from __future__ import annotations

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.metric import Metric, clean_fields
from telegraf_llm_input.servers.base import Fetcher, ModelReading, Reading, Rule
from telegraf_llm_input.servers.ollama import MODEL_MEASUREMENT

TYPE = "lmstudio"
NAME = "LM Studio"
FIELDS = ("models_loaded",)
"""llm_server fields read from its API (`/api/v0/models`)."""
MODELS_PATH = "/api/v0/models"


def loaded_models(answer: dict[str, object]) -> list[Metric]:
    """One `llm_model_loaded` metric per loaded model (time set by the source)."""
    out = []
    entries = answer.get("data")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("state") != "loaded" or not isinstance(entry.get("id"), str):
            continue
        tags = {"model": entry["id"]}
        for tag, key in (("quantization", "quantization"), ("format", "compatibility_type")):
            if isinstance(entry.get(key), str) and entry[key]:
                tags[tag] = entry[key]
        ctx = entry.get("max_context_length")
        fields = clean_fields(
            {
                "max_context_length": ctx if isinstance(ctx, int) and not isinstance(ctx, bool) else None,
                "loaded": 1,
            }
        )
        out.append(Metric(MODEL_MEASUREMENT, tags, fields, 0))
    return out


class LMStudioAdapter:
    server_type = TYPE

    async def read(self, fetch: Fetcher) -> Reading:
        answer = await fetch.json(MODELS_PATH)
        models = loaded_models(answer if isinstance(answer, dict) else {})
        reading = Reading([ModelReading(m.tags["model"]) for m in models], extra=models, server_type=TYPE)
        reading.health["models_loaded"] = len(models)
        return reading


def make(target: TargetConfig) -> LMStudioAdapter:
    return LMStudioAdapter()


DETECT = (Rule(MODELS_PATH, list_key="data", each_has="state"),)
