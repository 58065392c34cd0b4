"""The macOS process lookup (lsof fallback) on recorded lsof output, and through the process source with a
fake `lsof` on PATH and psutil refused as it is on macOS without root."""

from __future__ import annotations

import os
import types
from pathlib import Path

import psutil

from telegraf_llm_input.sources import process as process_module
from telegraf_llm_input.sources.macos_ports import Listener, listening_pids, parse_lsof_listen
from tests.fakes.nvml import install_missing_library
from tests.sources.test_process import gather, process_sources, servers  # noqa: F401  (fixture)
from tests.support.procs import free_port

LSOF = Path(__file__).resolve().parent.parent / "fixtures" / "lsof" / "listen.txt"
FAKE_BIN = Path(__file__).resolve().parent.parent / "fakes" / "bin"


def test_recorded_lsof_output_parsed():
    got = parse_lsof_listen(LSOF.read_text())
    assert Listener(812, "ollama", "127.0.0.1", 11434) in got
    assert Listener(1507, "LM Studio", "::1", 1234) in got  # `\x20` in COMMAND, brackets around IPv6
    assert Listener(2291, "Python", "0.0.0.0", 8080) in got and Listener(2291, "Python", "::", 8080) in got
    assert len(got) == 7


def test_listening_pids_only_for_the_port():
    assert listening_pids(1234, run=lambda port: LSOF.read_text()) == {1507}
    assert listening_pids(8000, run=lambda port: LSOF.read_text()) == set()
    assert listening_pids(8000, run=lambda port: "") == set()


def test_process_found_through_lsof_when_psutil_is_refused(servers, tmp_path, monkeypatch):  # noqa: F811
    install_missing_library(monkeypatch)
    port = free_port()
    server = servers("127.0.0.1", port)
    output = tmp_path / "lsof.txt"
    output.write_text(
        "COMMAND     PID  USER   FD   TYPE             DEVICE SIZE/OFF NODE NAME\n"
        f"Python    {server.pid} alice    5u  IPv4 0x7b1ee3f52c40b73f      0t0  TCP 127.0.0.1:{port} (LISTEN)\n"
    )
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LSOF_OUTPUT", str(output))

    def refused(*args, **kwargs):
        raise psutil.AccessDenied()

    # As on macOS without root: no system-wide socket table, and no other process's sockets.
    monkeypatch.setattr(psutil, "net_connections", refused)
    monkeypatch.setattr(process_module.psutil, "process_iter", lambda *a, **k: iter(()))
    [source] = process_sources([{"url": f"http://127.0.0.1:{port}", "type": "ollama"}])
    monkeypatch.setattr(process_module, "sys", types.SimpleNamespace(platform="linux"))
    assert gather(source).fields == {"up": 0, "restarts_total": 0}  # Linux: no lsof fallback
    monkeypatch.setattr(process_module, "sys", types.SimpleNamespace(platform="darwin"))
    f = gather(source).fields
    assert f["up"] == 1 and f["pid"] == server.pid
