"""Real journal files for tests: export-format records written by `systemd-journal-remote`, read by journalctl.

Appending to the same file adds entries, as a running journald would.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

JOURNAL_REMOTE = ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
BOOT_ID = "0123456789abcdef0123456789abcdef"


def journal_remote() -> str:
    for path in JOURNAL_REMOTE:
        if Path(path).exists():
            return path
    if shutil.which("journalctl") is None:
        pytest.skip("no journalctl")
    pytest.fail("systemd-journal-remote is missing: apt-get install systemd-journal-remote (scripts/test.sh)")


class JournalFile:
    """A journal file one unit writes messages to."""

    def __init__(self, path: Path, unit: str = "ollama.service"):
        if not path.name.endswith(".journal"):
            raise ValueError("systemd-journal-remote wants a name ending in .journal")
        self.path = path
        self.unit = unit
        self._seq = 0

    def write(self, *messages: str) -> None:
        records = []
        for msg in messages:
            self._seq += 1
            records.append(
                f"__REALTIME_TIMESTAMP={time.time_ns() // 1000}\n__MONOTONIC_TIMESTAMP={self._seq}\n"
                f"_BOOT_ID={BOOT_ID}\n_SYSTEMD_UNIT={self.unit}\nSYSLOG_IDENTIFIER=ollama\n"
                f"MESSAGE={msg.rstrip(chr(10))}\n\n"
            )
        subprocess.run(
            [journal_remote(), "-o", str(self.path), "-"],
            input="".join(records).encode(),
            check=True,
            capture_output=True,
        )
