"""Logging on stderr with Telegraf's level prefixes, one short line per record.

Telegraf's execd reads our stderr line by line and logs `E! ` lines as errors, `W! ` as
warnings, and so on; a line over 64 KiB makes it stop reading, so records are flattened to
one line and capped.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Hashable

MAX_LINE = 4000
_PREFIX = {logging.ERROR: "E! ", logging.WARNING: "W! ", logging.INFO: "I! ", logging.DEBUG: "D! "}
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

logger = logging.getLogger("telegraf_llm_input")


class TelegrafFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            exc = record.exc_info[1]
            message = f"{message}: {type(exc).__name__}: {exc}"
        prefix = _PREFIX.get(record.levelno) or ("E! " if record.levelno > logging.ERROR else "D! ")
        line = " ".join(message.split())
        if len(line) > MAX_LINE:
            line = line[: MAX_LINE - 3] + "..."
        return prefix + line


def setup_logging(level: str = "info", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(TelegrafFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(LEVELS.get(level.lower(), logging.INFO))
    logger.propagate = False
    # Libraries (asyncio, httpx) and Python warnings: same one-line prefixed format, warnings and up only,
    # instead of the bare "last resort" lines Telegraf would log as errors.
    root = logging.getLogger()
    if not root.handlers or getattr(root.handlers[0], "_telegraf_llm_input", False):
        other = logging.StreamHandler(stream or sys.stderr)
        other.setFormatter(TelegrafFormatter())
        other._telegraf_llm_input = True  # type: ignore[attr-defined]
        root.handlers[:] = [other]
        root.setLevel(logging.WARNING)
    logging.captureWarnings(True)


def get_logger(name: str) -> logging.Logger:
    return logger.getChild(name)


class StateLog:
    """Logs a problem once when it starts and once when it clears, not on every gather.

    Keyed so one object can track many targets or GPUs.
    """

    def __init__(self, log: logging.Logger):
        self._log = log
        self._failing: dict[Hashable, str] = {}

    def fail(self, key: Hashable, message: str, level: int = logging.WARNING) -> None:
        if key not in self._failing:
            self._log.log(level, message)
        self._failing[key] = message

    def ok(self, key: Hashable, message: str | None = None) -> None:
        if self._failing.pop(key, None) is not None and message:
            self._log.info(message)

    def is_failing(self, key: Hashable) -> bool:
        return key in self._failing

    def failing(self) -> dict[Hashable, str]:
        """Each problem that has not cleared, with the latest message logged or held back for it."""
        return dict(self._failing)
