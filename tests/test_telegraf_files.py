"""The Telegraf files we ship: valid TOML, an execd block that runs our console script the way execd needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import line_protocol_parser as lpp
import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the files are the same on 3.10

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "telegraf.conf.example", ROOT / "packaging" / "telegraf" / "telegraf-llm-input.conf"]


def console_script() -> str:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (name,) = [k for k, v in scripts.items() if v == "telegraf_llm_input.__main__:main"]
    return name


def execd_block(path: Path) -> dict:
    config = tomllib.loads(path.read_text())
    (block,) = config["inputs"]["execd"]
    return block


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_execd_block(path):
    block = execd_block(path)
    command = block["command"]
    assert isinstance(command, list) and all(isinstance(a, str) for a in command)
    assert Path(command[0]).name == console_script()
    assert command[command.index("--signal") + 1] == "stdin"
    assert block["signal"] == "STDIN"
    assert block["data_format"] == "influx"
    assert block["restart_delay"] == "10s"


def test_example_has_the_outputs():
    config = tomllib.loads(FILES[0].read_text())
    assert config["outputs"]["influxdb_v2"][0]["urls"] == ["http://127.0.0.1:8086"]
    assert config["outputs"]["file"][0]["data_format"] == "influx"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_command_line_runs(path, tmp_path):
    """The exact arguments, with our config path swapped for a temp one, run one gather."""
    args = execd_block(path)["command"][1:]
    config = tmp_path / "config.yaml"
    config.write_text("targets: []\ntags:\n  task: test\n")  # no discovery: a server on 11434 is not ours
    args[args.index("--config") + 1] = str(config)
    proc = subprocess.run(
        [sys.executable, "-m", "telegraf_llm_input", *args, "--once"], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines and all(lpp.parse_line(line)["tags"]["task"] == "test" for line in lines)
