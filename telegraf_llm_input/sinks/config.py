"""The `outputs:` list: each entry `{type: ..., ...}`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from telegraf_llm_input.configtypes import ConfigError, Duration, Secret, check_http_url


@dataclass
class StdoutOutput:
    type: Literal["stdout"] = "stdout"


@dataclass
class _Batching:
    batch_size: int = 5000
    flush_interval: Duration = 10.0
    timeout: Duration = 5.0
    buffer_dir: str | None = None
    """On-disk buffer for outages (default: <agent.state_dir>/buffer/<output> when state_dir is set)."""
    buffer_max_mb: float = 100.0
    """Outage buffer bound; beyond it the oldest batches are dropped (counted in output_dropped_points)."""
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure_skip_verify: bool = False

    def __post_init__(self) -> None:
        url: str = self.url  # type: ignore[attr-defined]  # each batching output declares its own url
        try:
            check_http_url(url, path_allowed=True)  # a proxy may serve it under a path
        except ValueError as exc:
            raise ConfigError("url", str(exc)) from None
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1, got {self.batch_size}")


@dataclass
class InfluxV2Output(_Batching):
    type: Literal["influxdb_v2"] = "influxdb_v2"
    url: str = "http://127.0.0.1:8086"
    org: str = ""
    bucket: str = ""
    token: Secret | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.bucket:
            raise ValueError("influxdb_v2 needs `bucket` (and usually `org` and `token`/`token_file`)")


@dataclass
class InfluxV1Output(_Batching):
    type: Literal["influxdb_v1"] = "influxdb_v1"
    url: str = "http://127.0.0.1:8086"
    database: str = "telegraf"
    retention_policy: str | None = None
    username: str | None = None
    password: Secret | None = None


@dataclass
class PrometheusOutput:
    type: Literal["prometheus"] = "prometheus"
    listen: str = "127.0.0.1:9273"
    path: str = "/metrics"
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
