"""The command line as users and Telegraf run it: exit codes, one-line config errors, sample/check, --once."""

from __future__ import annotations

import os
import subprocess
import sys

import line_protocol_parser as lpp
import pytest

from telegraf_llm_input import __version__
from tests.support.procs import free_port


def cli(*args: str, input: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "telegraf_llm_input", *args],
        input=input,
        capture_output=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


BAD = {
    "bad_yaml": ("agent:\n  interval: [1\n", "invalid YAML"),
    "unknown_key": ("agent:\n  intervall: 1s\n", "agent.intervall: unknown key"),
    "wrong_type": ("host:\n  enabled: 'yes'\n", "host.enabled: expected true or false"),
    "bad_duration": ("agent:\n  interval: 10 parsecs\n", "agent.interval: expected a duration"),
    "missing_env": ("tags:\n  task: ${TLI_DEFINITELY_UNSET}\n", "tags.task: environment variable TLI_DEFINITELY_UNSET"),
    "secret_unreadable": (
        "targets:\n  - url: http://127.0.0.1:8000\n    bearer_token_file: /nonexistent/token\n",
        "targets[0].bearer_token_file: cannot read secret file",
    ),
}


@pytest.mark.parametrize("command", [["check-config"], []])
@pytest.mark.parametrize("case", sorted(BAD))
def test_broken_config_is_one_line_and_exit_2(tmp_path, case, command):
    text, problem = BAD[case]
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    args = ["--config", str(path), *command] if command != ["check-config"] else ["check-config", "--config", str(path)]
    proc = cli(*args, input=b"")
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("E! ") and str(path) in lines[0] and problem in lines[0]
    assert proc.stdout == b""


def test_missing_file(tmp_path):
    proc = cli("check-config", "--config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [f"E! config error: {tmp_path / 'nope.yaml'}: file not found"]


def test_bad_interval_flag():
    proc = cli("--interval", "soon", "--once")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and b"--interval" in proc.stderr


def test_version():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.decode().strip() == f"telegraf-llm-input {__version__}"


def test_sample_config_piped_into_check_config():
    sample = cli("sample-config")
    assert sample.returncode == 0 and b"agent:" in sample.stdout
    check = cli("check-config", "--config", "-", input=sample.stdout)
    assert check.returncode == 0, check.stderr
    assert check.stdout.decode().startswith("config OK")


def test_check_config_ok(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("agent:\n  interval: 30s\nhost:\n  model_dir: /tmp\n")
    proc = cli("check-config", "--config", str(path))
    assert proc.returncode == 0 and b"host" in proc.stdout and proc.stderr == b""


def test_once_prints_one_gather_and_exits_zero(tmp_path):
    path = tmp_path / "c.yaml"
    # discovery looks at a port nothing listens on: a model server on this machine (Ollama on 11434) is not ours
    quiet = f"discovery:\n  ports: [{free_port()}]\n"
    path.write_text("tags:\n  task: algorithm_reasoning\nagent:\n  hostname: box\n" + quiet)
    proc = cli("--config", str(path), "--once")
    assert proc.returncode == 0, proc.stderr
    parsed = [lpp.parse_line(line) for line in proc.stdout.decode().splitlines()]
    assert {p["measurement"] for p in parsed} == {"llm_host", "llm_agent"}
    assert all(p["tags"]["host"] == "box" and p["tags"]["task"] == "algorithm_reasoning" for p in parsed)
    (total,) = [p for p in parsed if p["measurement"] == "llm_agent" and "source" not in p["tags"]]
    assert total["fields"]["gathers"] == 1
    assert all(line.startswith(("E! ", "W! ", "I! ", "D! ")) for line in proc.stderr.decode().splitlines())


@pytest.mark.parametrize("state_dir", [True, False])
def test_check_config_knows_whether_state_dir_is_set(tmp_path, state_dir):
    """check-config reads `agent.state_dir` as a run does: no "not set" note when it is set."""
    log = tmp_path / "requests.jsonl"
    log.write_text("")
    path = tmp_path / "c.yaml"
    agent = f"agent:\n  state_dir: {tmp_path / 'state'}\n" if state_dir else ""
    path.write_text(f"{agent}logs:\n  - path: {log}\n")
    proc = cli("check-config", "--config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert (b"state_dir is not set" in proc.stderr) is not state_dir, proc.stderr
