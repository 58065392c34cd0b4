"""`telegraf-llm-input top` as a user runs it: piped (plain frames), on a terminal (a pty: redraw, colours, q),
and the execd path, which must not load any of it."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

from tests.fakes.llm import fake_vllm, vllm_page
from tests.top.test_app import HEADER, frames, vllm_snap

TOP_ONLY = ("telegraf_llm_input.top", "curses", "_curses", "termios", "tty")
"""Modules only `top` needs: the execd path must import none of them."""


@pytest.fixture
def vllm():
    with fake_vllm([vllm_page({"Qwen/Qwen2.5-1.5B-Instruct": vllm_snap(i)}) for i in range(1, 200)]) as server:
        yield server


@pytest.fixture
def config(tmp_path, vllm):
    path = tmp_path / "top.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "targets": [{"url": vllm.url, "type": "vllm", "name": "vllm-a"}],
                "gpu": {"enabled": False},
                "agent": {"hostname": "box", "gather_timeout": "5s"},
            }
        )
    )
    return path


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "telegraf_llm_input", *args]


def top_twice(config: Path) -> subprocess.CompletedProcess[str]:
    """`top --count 2 --interval 1s` piped, as a user runs it."""
    return subprocess.run(
        command("top", "--config", str(config), "--count", "2", "--interval", "1s"),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_piped_top_prints_plain_frames_and_exits_after_count(config):
    proc = top_twice(config)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    first, second = frames(proc.stdout)
    assert "box" in first and "vllm-a  vllm  Qwen/Qwen2.5-1.5B-Instruct" in second
    assert "run 3 wait 1" in second and "ttft p50 375 ms p95 488 ms" in second


@pytest.mark.parametrize(
    "args, problem",
    [(["--count", "0"], "--count"), (["--interval", "soon"], "--interval"), (["--count", "two"], "--count")],
)
def test_bad_flags_exit_2_and_say_which(args, problem):
    proc = subprocess.run(command("top", *args), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert problem in proc.stderr.splitlines()[-1]


def module_names(importtime: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in importtime.splitlines() if line.startswith("import time:")}


def test_execd_path_imports_nothing_of_top(config):
    """Telegraf's execd run (`--signal stdin`): a gather happens, and none of top's modules were ever imported."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "telegraf_llm_input", "--signal", "stdin", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdin.write("\n")
    proc.stdin.flush()
    gathered = [proc.stdout.readline() for _ in range(3)]  # llm_host, llm_server, ... : one gather's lines
    out, err = proc.communicate("", timeout=60)
    assert proc.returncode == 0, err
    assert any(line.startswith("llm_server,") for line in gathered + out.splitlines()), gathered
    loaded = module_names(err)
    assert "telegraf_llm_input.agent" in loaded  # the check sees the agent's own imports
    assert not {m for m in loaded if m.startswith(TOP_ONLY)}


def test_top_itself_imports_them(config):
    """The other side of the check above: the same detection does see top's modules when top runs."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *command("top", "--config", str(config), "--count", "1")[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert {"telegraf_llm_input.top.app", "telegraf_llm_input.top.render", "termios"} <= module_names(proc.stderr)


# ---- on a terminal ----------------------------------------------------------------------------------------


class Terminal:
    """`top` on a pseudo-terminal of a given size; reads what it draws."""

    def __init__(self, config, env: dict[str, str], cols: int = 80, rows: int = 24):
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(
            command("top", "--config", str(config), "--interval", "1s"),
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env={**os.environ, **env},
        )
        self.seen = b""

    def read_until(self, pattern: bytes, timeout: float = 30.0) -> bytes:
        end = time.monotonic() + timeout
        while pattern not in self.seen and time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    break
        assert pattern in self.seen, self.seen[-2000:]
        return self.seen

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self) -> int:
        code = self.proc.wait(timeout=30)
        self.read_until(b"\x1b[?1049l", timeout=5)  # everything it wrote before exiting
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal(config):
    made = []

    def make(**env) -> Terminal:
        term = Terminal(config, {"TERM": "xterm-256color", **env})
        made.append(term)
        return term

    yield make
    for term in made:
        term.close()


def test_on_a_terminal_redraws_in_colour_and_quits_on_q(terminal):
    term = terminal(NO_COLOR="")  # empty counts as unset (no-color.org)
    screen = term.read_until(b"tok/s")
    assert screen.startswith(b"\x1b[?1049h")  # the alternate screen: the user's scrollback stays as it was
    assert b"\x1b[H" in screen and b"\x1b[32m" in screen  # redraw from home; UP in green
    term.read_until(b"q: quit")
    term.type(b"q")
    assert term.wait() == 0
    drawn, after = term.seen.split(b"\x1b[?25h\x1b[?1049l")  # cursor back, main screen back
    assert b"\x1b" not in after  # then only the log lines held while the screen was up
    assert termios.tcgetattr(term.slave)[3] == term.before[3]  # echo and line mode restored


def test_no_color_keeps_the_screen_but_drops_colours(terminal):
    term = terminal(NO_COLOR="1")
    screen = term.read_until(b"vllm-a")
    term.read_until(b"tok/s")
    assert b"\x1b[H" in screen and not re.search(rb"\x1b\[[\d;]*m", term.seen)
    term.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert term.wait() == 0


def test_every_line_fits_a_small_terminal(terminal, config):
    term = Terminal(config, {"TERM": "xterm", "NO_COLOR": "1"}, cols=50, rows=8)
    try:
        term.read_until(b"vllm-a")
        term.read_until(b"\x1b[J")
        frame = term.seen.split(b"\x1b[H")[-1].split(b"\x1b[J")[0].decode()
        lines = frame.replace("\x1b[K", "").split("\r\n")
        assert lines[0].startswith(HEADER[:20]) and 1 < len(lines) <= 8
        assert all(len(line) <= 50 for line in lines), lines
        term.type(b"q")
        assert term.wait() == 0
    finally:
        term.close()
