"""A probe's `api:` names: pure data with no imports of the package, read by the config (bottom) and the APIs'
table (`apis/`, which gives each name its row), so that reading a config loads no API module (start-up memory
sits beside the model)."""

from __future__ import annotations

from typing import Literal

ProbeApi = Literal["openai_chat", "openai_completions", "ollama", "llamacpp", "lmstudio"]
"""A probe's `api:` (the `api` tag of `llm_probe`): names kept from before the table, each one row
(`apis.PROBE_APIS`)."""
