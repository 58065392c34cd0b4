"""Who listens on a TCP port, on macOS without root: `lsof -nP -iTCP:<port> -sTCP:LISTEN`.

On macOS psutil's system-wide socket table needs root; psutil per process works for the user's own
processes and is tried first (sources/process.py). lsof is the fallback: it lists the sockets of every
process the user may inspect. Its columns: COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME, with NAME
like `127.0.0.1:11434 (LISTEN)`, `*:1234 (LISTEN)` or `[::1]:8080 (LISTEN)`; spaces in COMMAND are
printed as `\\x20`, so columns split on whitespace.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from telegraf_llm_input.log import get_logger

log = get_logger("process")

LSOF_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Listener:
    pid: int
    command: str
    ip: str
    port: int


def parse_lsof_listen(text: str) -> list[Listener]:
    """The listening TCP sockets in lsof's default output (header and other lines skipped)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 10 or not parts[1].isdigit() or "TCP" not in parts[7:]:
            continue
        node = parts.index("TCP", 7)
        if node + 1 >= len(parts) or "(LISTEN)" not in parts[node + 2 : node + 3]:
            continue
        host, sep, port = parts[node + 1].rpartition(":")
        if not sep or not port.isdigit():
            continue
        host = host.strip("[]")
        if host == "*":
            host = "::" if parts[4] == "IPv6" else "0.0.0.0"
        out.append(Listener(int(parts[1]), parts[0].replace("\\x20", " "), host, int(port)))
    return out


def run_lsof(port: int) -> str:
    """lsof's output for TCP listeners on `port` (blocking); empty when lsof is missing or finds none."""
    lsof = shutil.which("lsof") or ("/usr/sbin/lsof" if shutil.which("/usr/sbin/lsof") else None)
    if lsof is None:
        return ""
    try:
        done = subprocess.run(
            [lsof, "-nP", f"-iTCP:{port}", "-sTCP:LISTEN"], capture_output=True, timeout=LSOF_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug(f"lsof for port {port}: {exc}")
        return ""
    return done.stdout.decode(errors="replace")  # exit 1 with no output = nothing listens


def listening_pids(port: int, run: Callable[[int], str] = run_lsof) -> set[int]:
    return {listener.pid for listener in parse_lsof_listen(run(port)) if listener.port == port}
