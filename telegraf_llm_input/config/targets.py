"""A monitored model server (`targets:` entries) and the settings every part uses to reach it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from telegraf_llm_input.config.loader import ByteSize, ConfigError, Duration, Secret, check_http_url
from telegraf_llm_input.config.probe import ProbeConfig
from telegraf_llm_input.servertypes import DEFAULT_PORTS, ServerType


@dataclass
class ProcessConfig:
    """How to find the model server's process (default: whoever listens on the target's port)."""

    enabled: bool = True
    """The `llm_process` source for this target."""
    pid_file: str | None = None
    """The server's pid file."""
    pattern: str | None = None
    """A regular expression matched against full command lines; the oldest match is the server."""

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
    """`json` type: dotted path into the JSON document, e.g. `stats.response_time_ms` or `a.b.0`."""
    kind: Literal["gauge", "counter"] = "gauge"
    """A counter also gives `<name>_per_s` (`_total` dropped)."""
    type: Literal["float", "int"] = "float"
    """The field's line-protocol type, whatever the value."""


@dataclass
class DiscoveryConfig:
    """Looking for model servers when `targets:` is absent."""

    enabled: bool = True
    """Look for servers when `targets:` is absent."""
    host: str = "127.0.0.1"
    """Where to look."""
    ports: list[int] = field(default_factory=lambda: sorted(set(DEFAULT_PORTS.values())))
    """Ports to try: LM Studio 1234, TGI 3000, vLLM 8000, llama.cpp 8080, telegraf-llm-input proxy 8434, Ollama 11434,
    SGLang 30000."""
    timeout: Duration = 1.0
    """Per request while identifying a server."""
    rescan: Duration = 60.0
    """How often ports where nothing answered are tried again."""

    def __post_init__(self) -> None:
        bad = [p for p in self.ports if not 0 < p < 65536]
        if bad:
            raise ConfigError("ports", f"must be 1-65535, got {bad[0]}")


@dataclass
class TargetConfig:
    url: str
    """`http(s)://host:port` of the server (no path)."""
    type: ServerType = "auto"
    """The server's kind; `auto` identifies it from what it answers (docs/servers.md). `openai`: any
    OpenAI-compatible server (`/v1/models`)."""
    name: str | None = None
    """The `target` tag; each target's (given or derived) must differ. Default: the URL without credentials."""
    tags: dict[str, str] = field(default_factory=dict)
    """Extra tags on this target's points."""
    timeout: Duration = 3.0
    """The whole request, connect to last byte, retries included."""
    retries: int = 2
    """Retries of GETs after a connect error, timeout or 5xx (0.1 s, 0.3 s backoff); never after a 4xx; all
    attempts stay inside the gather deadline, so a slow target still reports `up=0`."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra request headers. Values are sent as written (`X-Key: 0123` sends `0123`, not YAML's octal 83);
    `yes`, `no`, `on`, `off`, `true` and `false` need quotes."""
    bearer_token: Secret | None = None
    """Sent as `Authorization: Bearer ...`; never logged."""
    tls_ca: str | None = None
    """CA file for HTTPS. Default: the system CAs."""
    tls_cert: str | None = None
    """Client certificate file (with `tls_key`)."""
    tls_key: str | None = None
    """Client certificate key file (with `tls_cert`)."""
    insecure_skip_verify: bool = False
    """Skip certificate checks (only for a self-signed test box)."""
    max_body_bytes: ByteSize = 8 * 1024 * 1024
    """A bigger page is an error, read no further."""
    max_models: int = 64
    """Most models (label sets for `type: prometheus`) reported per gather; the rest are dropped, logged once
    and counted in `llm_agent` `models_dropped`: a page with runaway labels stays bounded."""
    metrics_path: str | None = None
    """Where the metrics page is. Default: per server type (`/metrics`)."""
    # for `type: prometheus`
    measurement: str = "llm_server"
    """`prometheus` type: the measurement name."""
    include: list[str] = field(default_factory=list)
    """`prometheus` type: metric name globs to keep. Default: all."""
    exclude: list[str] = field(default_factory=list)
    """`prometheus` type: metric name globs to drop."""
    # for `type: json`
    json_fields: dict[str, JsonFieldConfig] = field(default_factory=dict)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    gpus: list[int] | None = None
    """GPU indices this server uses (for energy per token). Default: the GPUs its process holds memory on."""
    log: str | None = None
    """The server's own log, read for requests/s, latency and errors (Ollama, llama.cpp): a file path,
    `journal:UNIT` (a systemd unit's journal), or `docker:ID` / a container's `*-json.log` (Docker's json-file
    log). Default: found from the process listening on the port (the file of llama-server's `--log-file`, its
    systemd unit's journal, its Docker container's log, else Ollama's `~/.ollama/logs/server.log` of its user);
    `none` reads no log."""

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
        for name, value in self.headers.items():
            check_header(name, value)
        if self.log is not None and (
            not self.log.strip() or self.log.strip().lower() in ("journal:", "docker:")
        ):  # `docker:` alone would match every container's log, and read the first one's
            raise ConfigError("log", f"must be a file path, journal:UNIT, docker:ID or none, got {self.log!r}")

    @property
    def display_name(self) -> str:
        """The `target` tag: the configured name, else the URL without credentials."""
        return self.name or redact_url(self.url).rstrip("/")


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP field name is a token (RFC 9110 section 5.1): no space, colon or control character."""
_HEADER_VALUE = re.compile(r"(?:[\x21-\x7e](?:[ \t]*[\x21-\x7e])*)?")
"""What h11 sends: visible ASCII, spaces and tabs only inside (RFC 9110 section 5.5, without obs-text)."""


def check_header(name: str, value: str) -> None:
    """ConfigError unless `name: value` can be sent as an HTTP header (what h11 takes; else every gather would
    fail); the value (often a key) is never shown."""
    if not _HEADER_NAME.fullmatch(name):
        raise ConfigError(
            f"headers.{name}", "not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only, no spaces)"
        )
    if _HEADER_VALUE.fullmatch(value):
        return
    if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):
        problem = "has a CR, LF or other control character"
    elif not value.isascii():
        problem = "has a character outside ASCII"
    else:
        problem = "starts or ends with a space or tab"
    raise ConfigError(f"headers.{name}", f"the value {problem} (value not shown)")


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
