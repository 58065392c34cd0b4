"""A real VictoriaMetrics (Debian `victoria-metrics`) on 127.0.0.1 with a temporary data dir."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.procs import ManagedProcess, find_binary, free_port, http_ok, wait_until


def victoria_binary() -> str | None:
    return find_binary("victoria-metrics", "victoria-metrics-prod")


class VictoriaMetrics:
    def __init__(self, root: Path, port: int | None = None):
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: ManagedProcess | None = None

    def start(self) -> VictoriaMetrics:
        binary = victoria_binary()
        if binary is None:
            raise RuntimeError("victoria-metrics not installed (apt-get install victoria-metrics)")
        self.root.mkdir(parents=True, exist_ok=True)
        self._proc = ManagedProcess(
            [
                binary,
                f"-storageDataPath={self.root / 'data'}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y",
                "-search.disableCache",
            ],
            self.root / "vm.log",
        )
        wait_until(http_ok(f"{self.url}/health"), 30, "victoria-metrics", self._proc.proc, self._proc.log_path)
        return self

    def stop(self) -> None:
        if self._proc:
            self._proc.stop()
            self._proc = None

    def export(self, match: str) -> list[dict]:
        """Every stored sample of the series matching `match` (flushes recent writes first)."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=10)
        r = httpx.post(f"{self.url}/api/v1/export", data={"match[]": match, "start": "0"}, timeout=10)
        r.raise_for_status()
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]
