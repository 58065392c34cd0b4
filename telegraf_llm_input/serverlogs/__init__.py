"""Model servers' own logs (Ollama, llama.cpp): one module per log format, each a table of regular expressions.

`FORMATS`: server type -> the module (`TYPE`, `Parser`). The source that reads them is `sources/serverlog.py`.
"""

from __future__ import annotations

from types import ModuleType

from telegraf_llm_input.serverlogs import llamacpp, ollama

FORMATS: dict[str, ModuleType] = {m.TYPE: m for m in (ollama, llamacpp)}
