"""A real InfluxDB 1.x (Debian `influxdb`, 1.6.7) on 127.0.0.1 with a temporary data dir."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.procs import ManagedProcess, find_binary, free_port, http_ok, wait_until

CONFIG = """
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  max-body-size = {max_body_size}
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
"""


def influxd_binary() -> str | None:
    return find_binary("influxd")


class InfluxDB1:
    def __init__(self, root: Path, http_port: int | None = None, max_body_size: int = 0):
        self.root = root
        self.max_body_size = max_body_size
        """`[http] max-body-size`: a write body over it gets HTTP 413 (0: no limit)."""
        self.http_port = http_port or free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self._proc: ManagedProcess | None = None

    def start(self) -> InfluxDB1:
        binary = influxd_binary()
        if binary is None:
            raise RuntimeError("influxd not installed (apt-get install influxdb)")
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "influxdb.conf"
        conf.write_text(
            CONFIG.format(
                root=self.root, rpc_port=free_port(), http_port=self.http_port, max_body_size=self.max_body_size
            )
        )
        self._proc = ManagedProcess([binary, "-config", str(conf)], self.root / "influxd.log")
        wait_until(http_ok(f"{self.url}/ping", status=204), 30, "influxd", self._proc.proc, self._proc.log_path)
        return self

    def stop(self) -> None:
        if self._proc:
            self._proc.stop()
            self._proc = None

    def kill(self) -> None:
        if self._proc:
            self._proc.kill()
            self._proc = None

    def query(self, q: str, db: str | None = None) -> dict:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        r = httpx.post(f"{self.url}/query", data=params, timeout=10)
        r.raise_for_status()
        return r.json()

    def create_db(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def write(self, db: str, body: str | bytes, precision: str = "ns") -> httpx.Response:
        return httpx.post(
            f"{self.url}/write",
            params={"db": db, "precision": precision},
            content=body.encode() if isinstance(body, str) else body,
            timeout=10,
        )
