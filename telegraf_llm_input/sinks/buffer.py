"""Batches waiting for a database: on disk (survives SIGKILL) or, without a directory, in memory.

On disk each batch is one file `<seq>.lpb`: a header line `LPB1 <points> <bytes> <crc32>\\n` and
the line-protocol text. It is written to a temp file, fsynced, then renamed, so a kill leaves
either a whole batch or a `.tmp` that is ignored; a file whose length or checksum does not match
(a torn disk, a truncated copy) is skipped and counted, never replayed as garbage.
Both kinds are bounded by bytes: when full, the oldest batches go and their points are counted.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from telegraf_llm_input.log import get_logger

log = get_logger("buffer")

MAGIC = b"LPB1"
SUFFIX = ".lpb"


@dataclass(frozen=True, slots=True)
class Batch:
    key: int
    """Order of arrival; oldest first."""
    text: str
    points: int


def frame(text: str, points: int) -> bytes:
    body = text.encode("utf-8")
    return b"%s %d %d %d\n" % (MAGIC, points, len(body), zlib.crc32(body)) + body


def unframe(data: bytes) -> tuple[str, int] | None:
    """(text, points) from a framed file, or None when it is torn or not ours."""
    head, sep, body = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 4 or parts[0] != MAGIC:
        return None
    try:
        points, size, crc = (int(p) for p in parts[1:])
    except ValueError:
        return None
    if len(body) != size or zlib.crc32(body) != crc:
        return None
    try:
        return body.decode("utf-8"), points
    except UnicodeDecodeError:
        return None


class MemoryBuffer:
    """Bounded FIFO of batches, lost on restart (used when no buffer directory is configured)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: deque[Batch] = deque()
        self._bytes = 0
        self._next = 0
        self.points = 0
        self.dropped_points = 0
        self.corrupt_files = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, text: str, points: int) -> None:
        size = len(text.encode("utf-8"))
        self._items.append(Batch(self._next, text, points))
        self._next += 1
        self._bytes += size
        self.points += points
        self._trim()

    def _trim(self) -> None:
        while self._bytes > self.max_bytes and len(self._items) > 1:
            self._drop(self._items[0])

    def _drop(self, batch: Batch) -> None:
        self.dropped_points += batch.points
        self.pop(batch)

    def peek(self) -> Batch | None:
        return self._items[0] if self._items else None

    def pop(self, batch: Batch) -> None:
        if self._items and self._items[0].key == batch.key:
            self._items.popleft()
            self._bytes -= len(batch.text.encode("utf-8"))
            self.points -= batch.points


class DiskBuffer:
    """Bounded FIFO of batches, one file each, in `directory`; what a previous run left is kept."""

    def __init__(self, directory: Path, max_bytes: int):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.dropped_points = 0
        self.corrupt_files = 0
        self._files: deque[tuple[int, int, int]] = deque()  # (seq, bytes, points)
        self._bytes = 0
        self.points = 0
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)  # a write the kill interrupted: never renamed, never complete
        for path in sorted(self.dir.glob("*" + SUFFIX)):
            try:
                seq = int(path.stem)
            except ValueError:
                continue
            data = path.read_bytes()
            decoded = unframe(data)
            if decoded is None:
                self._corrupt(path)
                continue
            self._files.append((seq, len(data), decoded[1]))
            self._bytes += len(data)
            self.points += decoded[1]
        self._next = self._files[-1][0] + 1 if self._files else 0
        self._trim()

    def __len__(self) -> int:
        return len(self._files)

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:020d}{SUFFIX}"

    def _corrupt(self, path: Path) -> None:
        self.corrupt_files += 1
        log.warning("output buffer: skipping damaged batch file %s (torn write or foreign file)", path.name)
        path.unlink(missing_ok=True)

    def push(self, text: str, points: int) -> None:
        data = frame(text, points)
        seq = self._next
        self._next += 1
        path = self._path(seq)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self.dir)
        self._files.append((seq, len(data), points))
        self._bytes += len(data)
        self.points += points
        self._trim()

    def _trim(self) -> None:
        while self._bytes > self.max_bytes and len(self._files) > 1:
            seq, size, points = self._files.popleft()
            self._path(seq).unlink(missing_ok=True)
            self._bytes -= size
            self.points -= points
            self.dropped_points += points

    def peek(self) -> Batch | None:
        while self._files:
            seq, size, points = self._files[0]
            path = self._path(seq)
            try:
                decoded = unframe(path.read_bytes())
            except FileNotFoundError:
                decoded = None
            if decoded is not None:
                return Batch(seq, decoded[0], decoded[1])
            self._files.popleft()
            self._bytes -= size
            self.points -= points
            self.dropped_points += points
            self._corrupt(path)
        return None

    def pop(self, batch: Batch) -> None:
        if self._files and self._files[0][0] == batch.key:
            seq, size, points = self._files.popleft()
            self._path(seq).unlink(missing_ok=True)
            self._bytes -= size
            self.points -= points


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
