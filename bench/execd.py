"""The agent as Telegraf runs it: `python -m telegraf_llm_input --config F --signal stdin`, one gather per
newline on stdin, line protocol on stdout (stderr dropped: the figures come from stdout)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def start(config: Path, signal: str, stdin, stdout, python: str | None = None) -> subprocess.Popen[str]:
    """`python -m telegraf_llm_input --config CONFIG --signal SIGNAL` from this checkout, stderr dropped; with
    `python` (bench.installed), that interpreter's installed copy (run beside the config, not in the checkout)."""
    return subprocess.Popen(
        [python or sys.executable, "-m", "telegraf_llm_input", "--config", str(config), "--signal", signal],
        cwd=REPO if python is None else config.parent,
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@contextmanager
def execd_agent(config: Path, python: str | None = None) -> Iterator[subprocess.Popen[str]]:
    """The agent started on `config` (by `python`, as `start`); on exit its stdin is closed (it finishes) and it is
    waited for."""
    agent = start(config, "stdin", subprocess.PIPE, subprocess.PIPE, python)
    try:
        yield agent
    finally:
        assert agent.stdin is not None
        agent.stdin.close()
        agent.wait(30)


def trigger(agent: subprocess.Popen[str], n: int) -> list[str]:
    """Trigger gather n (the agent's n-th); its lines, up to its `llm_agent` line that counts `gathers=n`."""
    assert agent.stdin is not None and agent.stdout is not None
    agent.stdin.write("\n")
    agent.stdin.flush()
    lines = []
    marker = f"gathers={n}i"
    while True:
        line = agent.stdout.readline()
        if not line:
            raise SystemExit(f"agent exited after {n - 1} gathers")
        lines.append(line)
        if line.startswith("llm_agent") and marker in line:
            return lines
