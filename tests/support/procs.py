"""Start real server binaries on 127.0.0.1 for tests, wait for them, and always stop them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(*names: str) -> str | None:
    """A server binary on PATH or in the usual Debian places."""
    for name in names:
        for candidate in (shutil.which(name), f"/usr/bin/{name}", f"/usr/sbin/{name}"):
            if candidate and os.access(candidate, os.X_OK):
                return candidate
    return None


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {tail}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def http_ok(url: str, *, status: int | Sequence[int] = 200) -> Callable[[], bool]:
    allowed = (status,) if isinstance(status, int) else tuple(status)
    return lambda: httpx.get(url, timeout=1.0).status_code in allowed


class ManagedProcess:
    """A child server process with its output in a log file; stop() is SIGTERM, then SIGKILL."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict | None = None, cwd: Path | None = None):
        self.argv = list(argv)
        self.log_path = log
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


class RealPrometheus(ManagedProcess):
    """A real Prometheus on a free 127.0.0.1 port, its config (YAML text) and TSDB in `workdir`; `url`.
    `wait_ready()` before asking it anything."""

    def __init__(self, binary: str, workdir: Path, config: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "prometheus.yml").write_text(config)
        super().__init__(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            workdir / "prometheus.log",
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(http_ok(f"{self.url}/-/ready"), timeout, "prometheus", self.proc, self.log_path)
