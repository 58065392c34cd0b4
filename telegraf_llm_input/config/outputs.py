"""The `outputs:` list: each entry `{type: ..., ...}`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from telegraf_llm_input.config.loader import ConfigError, Duration, Secret, check_http_url

MAX_BUFFER_MB = 1_000_000.0
"""1 TB: a bigger bound is a typo, and `int(mb * 1e6)` of an infinite one ends the run."""


@dataclass
class StdoutOutput:
    type: Literal["stdout"] = "stdout"


@dataclass
class _Batching:
    batch_size: int = 5000
    """Points per write."""
    flush_interval: Duration = 10.0
    """Longest a point waits in memory while the database is up."""
    timeout: Duration = 5.0
    """Per write request."""
    buffer_dir: str | None = None
    """On-disk buffer for outages; `<output>` is the type, `influxdb_v2_2` for a second one. Default:
    `<agent.state_dir>/buffer/<output>` when `state_dir` is set, else in memory."""
    buffer_max_mb: float = 100.0
    """Outage buffer bound, over 0 and at most 1000000 (1 TB); beyond it the oldest batches are dropped (counted in
    `output_dropped_points`)."""
    tls_ca: str | None = None
    """CA file for HTTPS. Default: the system CAs."""
    tls_cert: str | None = None
    """Client certificate file (with `tls_key`)."""
    tls_key: str | None = None
    """Client certificate key file."""
    insecure_skip_verify: bool = False
    """Skip certificate checks."""

    def __post_init__(self) -> None:
        url: str = self.url  # type: ignore[attr-defined]  # each batching output declares its own url
        try:
            check_http_url(url, path_allowed=True)  # a proxy may serve it under a path
        except ValueError as exc:
            raise ConfigError("url", str(exc)) from None
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1, got {self.batch_size}")
        if not 0 < self.buffer_max_mb <= MAX_BUFFER_MB:
            raise ConfigError(
                "buffer_max_mb", f"must be over 0 and at most {MAX_BUFFER_MB:.0f} (1 TB), got {self.buffer_max_mb:g}"
            )


@dataclass
class InfluxV2Output(_Batching):
    type: Literal["influxdb_v2"] = "influxdb_v2"
    url: str = "http://127.0.0.1:8086"
    """InfluxDB 2.x/3.x, 1.8+ (v2 API), VictoriaMetrics."""
    org: str = "-"
    """Organization: its name on InfluxDB 2.x, where it must exist. VictoriaMetrics and InfluxDB 1.8 ignore it
    (`-` is 1.8's convention; written `org: "-"`, quoted)."""
    bucket: str = ""
    """Required."""
    token: Secret | None = None
    """API token; never logged."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.bucket:
            raise ValueError("influxdb_v2 needs `bucket` (and usually `org` and `token`/`token_file`)")
        if not self.org:
            raise ConfigError("org", "must not be empty: the organization's name on InfluxDB 2.x, or `-` (the default)")


@dataclass
class InfluxV1Output(_Batching):
    type: Literal["influxdb_v1"] = "influxdb_v1"
    url: str = "http://127.0.0.1:8086"
    """InfluxDB 1.x."""
    database: str = "telegraf"
    """Must exist: a 404 "database not found" is reported once with the `CREATE DATABASE` to run."""
    retention_policy: str | None = None
    """Retention policy to write into. Default: the database's default policy."""
    username: str | None = None
    """User name (with `password`). Default: none (no authentication)."""
    password: Secret | None = None
    """Never logged."""


@dataclass
class PrometheusOutput:
    type: Literal["prometheus"] = "prometheus"
    listen: str = "127.0.0.1:9273"
    """Address of the page; binding elsewhere (`0.0.0.0:9273`) is an explicit choice."""
    path: str = "/metrics"
    """Path of the page."""
    expire: Duration = 120.0
    """Series not updated for this long leave the page."""

    def __post_init__(self) -> None:
        try:
            parse_listen(self.listen)
        except ValueError as exc:
            raise ConfigError("listen", str(exc)) from None
        if not self.path.startswith("/"):
            raise ConfigError("path", f"must start with /, got {self.path!r}")


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` (an empty host is 127.0.0.1) -> (host, port); ValueError naming the problem."""
    host, sep, port = listen.rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port with a port in 1-65535, got {listen!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


OutputConfig = StdoutOutput | InfluxV2Output | InfluxV1Output | PrometheusOutput
