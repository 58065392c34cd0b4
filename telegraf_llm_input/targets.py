"""A monitored model server (`targets:` entries) and the settings every part uses to reach it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from telegraf_llm_input.configtypes import ByteSize, ConfigError, Duration, Secret, check_http_url
from telegraf_llm_input.probe.config import ProbeConfig

ServerType = Literal["auto", "vllm", "llamacpp", "sglang", "tgi", "ollama", "lmstudio", "openai", "mlx", "json",
                     "prometheus"]


@dataclass
class ProcessConfig:
    """How to find the model server's process (default: whoever listens on the target's port)."""

    enabled: bool = True
    pid_file: str | None = None
    pattern: str | None = None
    """Regular expression matched against the full command line."""

    def __post_init__(self) -> None:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None


@dataclass
class JsonFieldConfig:
    """One field of a `type: json` target: where it is in the page and what it is."""

    path: str
    """Dotted path into the JSON document, e.g. `stats.response_time_ms`."""
    kind: Literal["gauge", "counter"] = "gauge"
    type: Literal["float", "int"] = "float"


DEFAULT_PORTS = {"vllm": 8000, "llamacpp": 8080, "ollama": 11434, "sglang": 30000, "lmstudio": 1234, "tgi": 3000}


@dataclass
class DiscoveryConfig:
    """Looking for model servers when `targets:` is absent."""

    enabled: bool = True
    host: str = "127.0.0.1"
    ports: list[int] = field(default_factory=lambda: sorted(DEFAULT_PORTS.values()))
    timeout: Duration = 1.0
    rescan: Duration = 60.0
    """How often ports where nothing answered are tried again."""

    def __post_init__(self) -> None:
        bad = [p for p in self.ports if not 0 < p < 65536]
        if bad:
            raise ConfigError("ports", f"must be 1-65535, got {bad[0]}")


@dataclass
class TargetConfig:
    url: str
    type: ServerType = "auto"
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    timeout: Duration = 3.0
    retries: int = 2
    headers: dict[str, str] = field(default_factory=dict)
    bearer_token: Secret | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure_skip_verify: bool = False
    max_body_bytes: ByteSize = 8 * 1024 * 1024
    max_models: int = 64
    """Most models (label sets for `type: prometheus`) reported per gather; the rest are dropped, logged once
    and counted in `llm_agent` `models_dropped`: a page with runaway labels stays bounded."""
    metrics_path: str | None = None
    """Override where the metrics page is (default per server type, usually /metrics)."""
    # type: prometheus
    measurement: str = "llm_server"
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    # type: json
    json_fields: dict[str, JsonFieldConfig] = field(default_factory=dict)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    gpus: list[int] | None = None
    """GPU indices this server uses (energy per token); default: the GPUs its process holds memory on."""

    def __post_init__(self) -> None:
        try:
            check_http_url(self.url, path_allowed=False)
        except ValueError as exc:
            raise ConfigError("url", str(exc)) from None
        if self.max_models < 1:
            raise ConfigError("max_models", f"must be at least 1, got {self.max_models}")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")

    @property
    def display_name(self) -> str:
        """The `target` tag: the configured name, else the URL without credentials."""
        return self.name or redact_url(self.url).rstrip("/")


def redact_url(url: str) -> str:
    """The URL without user:password (never log or tag credentials)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
