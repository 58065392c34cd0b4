"""The `host:` section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HostConfig:
    enabled: bool = True
    """The `llm_host` source (CPU, memory, swap, model disk)."""
    model_dir: str | None = None
    """Directory holding model files; its filesystem's free and total space are reported."""
