"""A `logs:` entry: a JSON-lines request log to aggregate per interval."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from telegraf_llm_input.configtypes import ByteSize


@dataclass
class ErrorWhenConfig:
    """A request is an error when any condition holds."""

    status_not_in: list[str] | None = None
    http_status_gte: int | None = None
    http_status_field: str | None = None
    """Key or dotted path of the HTTP status code in the record (e.g. `http_status`)."""


@dataclass
class LogConfig:
    path: str
    """File path; a glob matches several files."""
    format: Literal["json"] = "json"
    fields: dict[str, str] = field(default_factory=dict)
    """Our name (latency_ms, ttft_ms, prompt_tokens, completion_tokens, status, timestamp, model) -> key or dotted path."""
    error_when: ErrorWhenConfig = field(default_factory=ErrorWhenConfig)
    group_by: list[str] = field(default_factory=list)
    """Record keys that become tags (e.g. model, prompt_version)."""
    max_groups: int = 50
    """Distinct values per group_by key; the rest become `other`."""
    start_from: Literal["end", "beginning"] = field(default="end", metadata={"key": "from"})
    """Where to start reading a file seen for the first time (no saved position)."""
    max_read_per_gather: ByteSize = 16 * 1024 * 1024
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
