"""The proxy's systemd unit and launchd job: valid, hardened, restarting, and running a command line the
proxy accepts."""

from __future__ import annotations

import plistlib
import shlex
from pathlib import Path

from telegraf_llm_input.cli import _parser
from telegraf_llm_input.proxy import app
from tests.test_systemd_unit import systemd_problems

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
    assert systemd_problems(UNIT, tmp_path) == []


def test_the_launchd_job_keeps_the_proxy_alive():
    job = plistlib.loads(PLIST.read_bytes())
    assert job["Label"] == PLIST.stem and job["KeepAlive"] is True and job["RunAtLoad"] is True
    binary, *argv = job["ProgramArguments"]
    assert binary.endswith("/telegraf-llm-input")
    accepted(argv)
    assert job["StandardErrorPath"].endswith(".log") and job["Umask"] == 0o077
