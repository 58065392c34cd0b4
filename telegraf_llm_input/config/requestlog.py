"""A `logs:` entry: a JSON-lines request log to aggregate per interval."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from telegraf_llm_input.config.loader import ByteSize

FIELD_NAMES = ("latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens", "status", "timestamp", "model")
DEFAULT_FIELDS = {
    "latency_ms": "duration_ms",
    "ttft_ms": "ttft_ms",
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "status": "status",
    "timestamp": "timestamp",
    "model": "model",
}
"""Record keys used for our names the `fields:` mapping does not set (the seed design's log line)."""
DEFAULT_OK_STATUSES = ["success", "ok"]


@dataclass
class ErrorWhenConfig:
    """A request is an error when any condition holds. No condition set: status not in [success, ok]."""

    status_not_in: list[str] | None = None
    http_status_gte: int | None = None
    http_status_field: str = "http_status"
    """Key or dotted path of the HTTP status code in the record."""


@dataclass
class LogConfig:
    path: str
    """File path; a glob matches several files."""
    format: Literal["json"] = "json"
    fields: dict[str, str] = field(default_factory=dict)
    """Our name (latency_ms, ttft_ms, prompt_tokens, completion_tokens, status, timestamp, model) -> key or dotted path."""
    error_when: ErrorWhenConfig = field(default_factory=ErrorWhenConfig)
    group_by: list[str] = field(default_factory=list)
    """Record keys or dotted paths that become tags (e.g. model, prompt_version). One of our field
    names (e.g. model) is looked up through `fields:`."""
    max_groups: int = 50
    """Distinct values per group_by key; the rest become `other`."""
    start_from: Literal["end", "beginning"] = field(default="end", metadata={"key": "from"})
    """Where to start reading a file seen for the first time (no saved position)."""
    max_read_per_gather: ByteSize = 16 * 1024 * 1024
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.fields) - set(FIELD_NAMES))
        if unknown:
            raise ValueError(f"fields: unknown name(s) {', '.join(unknown)}; known: {', '.join(FIELD_NAMES)}")
        if "log" in self.group_by:
            raise ValueError("group_by: `log` is the entry's own tag; use another key")
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError("group_by: a key is listed twice")
        if self.max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        if self.max_read_per_gather < 1:
            raise ValueError("max_read_per_gather must be positive")
        if not self.path:
            raise ValueError("path must not be empty")
