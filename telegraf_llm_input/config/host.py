"""The `host:` section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HostConfig:
    enabled: bool = True
    model_dir: str | None = None
    """Directory holding model files; its filesystem's free space is reported."""
