"""Drawing frames: a full-screen redraw on a terminal (plain ANSI, no library), plain text otherwise.

On a terminal: the alternate screen, cursor hidden, keys read unbuffered (cbreak, so Ctrl-C still
sends SIGINT), everything restored on close. Not a terminal: one frame per gather, no escape codes.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import termios
import tty
from collections.abc import Mapping
from typing import TextIO

from telegraf_llm_input.top.render import ASCII, UNICODE, Glyphs, Line, ansi, plain, render
from telegraf_llm_input.top.view import Snapshot

ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, hide the cursor
LEAVE = "\x1b[?25h\x1b[?1049l"
HOME = "\x1b[H"
ERASE_LINE = "\x1b[K"
ERASE_BELOW = "\x1b[J"
QUIT_KEYS = frozenset(b"qQ\x03\x04")  # q, Ctrl-C and Ctrl-D (as bytes, when the terminal does not signal)


def wants_color(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Colour only on a terminal that has colours, and never when NO_COLOR is set (https://no-color.org)."""
    if environ.get("NO_COLOR") or not _isatty(stream):
        return False
    term = environ.get("TERM", "")
    if term in ("", "dumb"):
        return False
    try:
        import curses  # stdlib, but optional in some Python builds; reads the terminfo entry only, draws nothing

        curses.setupterm(term, stream.fileno())
        return curses.tigetnum("colors") >= 8
    except Exception:  # no terminfo for TERM, or no curses build: no colour, no failure
        return False


def glyphs_for(stream: TextIO) -> Glyphs:
    """Block characters where the stream can encode them (a str buffer has no encoding: it can)."""
    encoding = getattr(stream, "encoding", None)
    return UNICODE if encoding is None or encoding.lower().replace("-", "").startswith("utf") else ASCII


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class PlainScreen:
    """Not a terminal (a pipe, a file, a test): every frame in full, a blank line after each."""

    interactive = False

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.glyphs = glyphs_for(stream)

    def show(self, snapshot: Snapshot) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        lines = render(snapshot, width, None, glyphs=self.glyphs)
        self.stream.write("\n".join(plain(line) for line in lines) + "\n\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class TtyScreen:
    """A terminal: redraw in place; colours when `color`; reads keys from `keys_fd` when given."""

    interactive = True

    def __init__(self, stream: TextIO, *, color: bool, keys_fd: int | None):
        self.stream = stream
        self.color = color
        self.glyphs = glyphs_for(stream)
        self.keys_fd = keys_fd
        self._saved_tty: list | None = None
        self._last: Snapshot | None = None

    def open(self) -> None:
        if self.keys_fd is not None:
            try:
                self._saved_tty = termios.tcgetattr(self.keys_fd)
                tty.setcbreak(self.keys_fd)
            except termios.error:
                self.keys_fd = None
        self.stream.write(ENTER + HOME + "telegraf-llm-input top: first gather" + ERASE_BELOW)  # until it is done
        self.stream.flush()

    def size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self.stream.fileno())
            return size.columns, size.lines
        except (OSError, ValueError):
            return 80, 24

    def show(self, snapshot: Snapshot | None = None) -> None:
        """Draw `snapshot`, or the last one again (after a resize)."""
        snapshot = snapshot or self._last
        if snapshot is None:
            return
        self._last = snapshot
        width, height = self.size()
        lines = render(snapshot, width - 1, height, glyphs=self.glyphs, keys=self.keys_fd is not None)
        self.stream.write(self.frame(lines))
        self.stream.flush()

    def frame(self, lines: list[Line]) -> str:
        """One redraw: home, each line over the old one, then clear what the previous frame left below."""
        text = (ERASE_LINE + "\r\n").join(ansi(line) if self.color else plain(line) for line in lines)
        return HOME + text + ERASE_LINE + ERASE_BELOW

    def read_keys(self) -> bool:
        """Read what was typed; True when it asks to quit (or the keyboard is gone)."""
        if self.keys_fd is None:
            return False
        try:
            data = os.read(self.keys_fd, 64)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        return not data or any(b in QUIT_KEYS for b in data)

    def close(self) -> None:
        if self._saved_tty is not None and self.keys_fd is not None:
            try:
                termios.tcsetattr(self.keys_fd, termios.TCSADRAIN, self._saved_tty)
            except termios.error:
                pass
            self._saved_tty = None
        try:
            self.stream.write(LEAVE)
            self.stream.flush()
        except (OSError, ValueError):
            pass


def open_screen(stream: TextIO, keys: TextIO | None = None) -> PlainScreen | TtyScreen:
    """The screen `stream` calls for: full-screen when it is a terminal, plain text otherwise."""
    if not _isatty(stream):
        return PlainScreen(stream)
    keys = keys if keys is not None else sys.stdin
    screen = TtyScreen(stream, color=wants_color(stream), keys_fd=keys.fileno() if _isatty(keys) else None)
    screen.open()
    return screen


class HeldLogs(logging.Handler):
    """Keeps log records while the screen is up (stderr lines would tear it), to print after it closes."""

    def __init__(self, keep: int = 200):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.keep = keep
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if len(self.records) > self.keep:
            del self.records[0]
            self.dropped += 1
