"""The proxy's systemd unit and launchd job: valid, hardened, restarting, and running a command line the
proxy accepts."""

from __future__ import annotations

import plistlib
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from telegraf_llm_input.cli import _parser
from telegraf_llm_input.proxy import app

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "systemd" / "telegraf-llm-input-proxy.service"
PLIST = ROOT / "packaging" / "launchd" / "org.telegraf-llm-input.proxy.plist"


def accepted(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert args.command == "proxy"
    address, (host, _), _, _ = app.settings(args)
    assert host == "127.0.0.1" and address.scheme == "http"  # loopback unless the user says otherwise


def test_the_unit_restarts_at_once_is_hardened_and_runs_the_proxy():
    text = UNIT.read_text()
    for line in (
        "Restart=always",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateDevices=yes",
    ):
        assert line in text, line
    (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    binary, *argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert binary.endswith("/telegraf-llm-input")
    accepted(argv)


def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd): cannot verify the unit")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/telegraf-llm-input/bin/telegraf-llm-input", "/bin/true"))
    r = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (r.stdout + r.stderr).splitlines() if UNIT.name in line]
    assert problems == [], "\n".join(problems)


def test_the_launchd_job_keeps_the_proxy_alive():
    job = plistlib.loads(PLIST.read_bytes())
    assert job["Label"] == PLIST.stem and job["KeepAlive"] is True and job["RunAtLoad"] is True
    binary, *argv = job["ProgramArguments"]
    assert binary.endswith("/telegraf-llm-input")
    accepted(argv)
    assert job["StandardErrorPath"].endswith(".log") and job["Umask"] == 0o077
