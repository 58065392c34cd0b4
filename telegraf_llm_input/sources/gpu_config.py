"""The `gpu:` section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union


@dataclass
class GpuConfig:
    enabled: Union[bool, Literal["auto"]] = "auto"
    """auto: use NVML when present, say so once when not."""
    indices: list[int] | None = None
    """Only these GPU indices (default: all)."""
    nvidia_smi_compat: bool = False
    """Also emit `nvidia_smi` with Telegraf's inputs.nvidia_smi names, for existing dashboards."""
