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
    """Error when `status` is present and not in the list. Default: `[success, ok]` when no rule is set."""
    http_status_gte: int | None = None
    """Error when the HTTP status (key `http_status_field`) is at least this."""
    http_status_field: str = "http_status"
    """Key or dotted path of the HTTP status code in the record."""


@dataclass
class LogConfig:
    path: str
    """The log file; a glob (`/var/log/app/*.jsonl`) follows every matching file, counted together."""
    format: Literal["json"] = "json"
    """One JSON object per line (the only format)."""
    fields: dict[str, str] = field(default_factory=dict)
    """Our name -> key or dotted path (`usage.prompt_tokens`) in the line; our names: `latency_ms` (default key
    `duration_ms`), `ttft_ms`, `prompt_tokens`, `completion_tokens`, `status`, `timestamp`, `model`. Default:
    same-named keys."""
    error_when: ErrorWhenConfig = field(default_factory=ErrorWhenConfig)
    group_by: list[str] = field(default_factory=list)
    """Keys or dotted paths that become tags, e.g. `[model, prompt_version]` (a name from `fields` is looked up
    through it); a missing key is tagged `none`."""
    max_groups: int = 50
    """Distinct values per `group_by` key since start; later new values are tagged `other`, their count in
    `grouped_as_other`."""
    start_from: Literal["end", "beginning"] = field(default="end", metadata={"key": "from"})
    """Where to start in a file seen for the first time with no saved position. A file created while the agent
    runs is always read from its start."""
    max_read_per_gather: ByteSize = 16 * 1024 * 1024
    """Bytes read per gather per entry; reading also stops after half the gather deadline, so a backlog is worked
    off over several gathers and never makes the gather late."""
    name: str | None = None
    """Value of the `log` tag; each entry's (given or derived) must differ. Default: the path."""
    tags: dict[str, str] = field(default_factory=dict)
    """Extra tags on this entry's points."""

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
