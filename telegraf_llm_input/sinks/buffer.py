"""Batches waiting for a database: on disk (survives SIGKILL) or, without a directory, in memory.

On disk each batch is one file `<seq>.lpb`: a header line `LPB1 <points> <bytes> <crc32>\\n` and
the line-protocol text. It is written to a temp file, fsynced, then renamed, so a kill leaves
either a whole batch or a `.tmp` that is ignored; a file whose length or checksum does not match
(a torn disk, a truncated copy) is skipped and counted, never replayed as garbage.
Both kinds are bounded by bytes: when full, the oldest batches go and their points are counted.

A full filesystem (ENOSPC, EDQUOT) is the same bound reached early: the oldest batch files are
removed until the new one fits; only when none is left is the new batch itself dropped. Every
write is checked (a short write is retried, a failed one removes its temp file), so the buffer
never holds a torn batch or a `.tmp` of its own. Entries it cannot read (a directory or an
unreadable file named `*.lpb`) are left alone and skipped with one warning per start.

Only regular files are read, opened without following a symlink and without blocking (a FIFO, a
device, a link to `/dev/zero`), and only up to a size cap (a 10 GiB sparse file would take the
memory and the start-up with it): anything else named `*.lpb` is junk, skipped and left alone.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from telegraf_llm_input.log import get_logger

log = get_logger("buffer")

MAGIC = b"LPB1"
SUFFIX = ".lpb"
FULL = (errno.ENOSPC, errno.EDQUOT)
"""Errors that mean "no room": older batches are removed to make some."""
MIN_FILE_CAP = 64 * 1024 * 1024
"""A batch file may be as big as the whole buffer bound (one batch is always kept), and never needs to be
bigger; this floor keeps a tiny `buffer_max_mb` from refusing batches a bigger bound wrote earlier."""
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
"""Never block on a FIFO or a device, never follow a symlink."""


class NotABatch(OSError):
    """An entry named like a batch that is not one of ours to read: not a regular file, or too big."""


def read_batch_file(path: Path, cap: int) -> bytes:
    """The bytes of a regular file of at most `cap` bytes; NotABatch for anything else (never blocks)."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotABatch(exc.errno, "a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotABatch(errno.EINVAL, "not a regular file")
        if info.st_size > cap:
            raise NotABatch(errno.EFBIG, f"{info.st_size} bytes, over the {cap}-byte cap of a batch file")
        chunks, left = [], cap + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:  # grew while being read
            raise NotABatch(errno.EFBIG, f"over the {cap}-byte cap of a batch file")
        return b"".join(chunks)
    finally:
        os.close(fd)


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
        self.full_drops = 0

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

    def __init__(self, directory: Path, max_bytes: int, write=os.write):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.file_cap = max(max_bytes, MIN_FILE_CAP)
        """Largest batch file read; bigger ones are not ours (one batch never exceeds the buffer bound)."""
        self.dropped_points = 0
        self.corrupt_files = 0
        self.full_drops = 0
        """Batches removed (oldest first) because the filesystem was full."""
        self._write = write
        self._files: deque[tuple[int, int, int]] = deque()  # (seq, bytes, points)
        self._bytes = 0
        self.points = 0
        self._unreadable: list[str] = []
        for tmp in self.dir.glob("*.tmp"):
            try:
                tmp.unlink()  # a write the kill interrupted: never renamed, never complete
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._unreadable.append(f"{tmp.name} ({exc.strerror or type(exc).__name__})")
        seqs = []
        for path in self.dir.glob("*" + SUFFIX):
            try:
                seqs.append((int(path.stem), path))
            except ValueError:
                continue
        for seq, path in sorted(seqs):
            try:
                data = read_batch_file(path, self.file_cap)
            except OSError as exc:  # a directory, a FIFO, a link, too big, no permission: not ours to delete
                self._unreadable.append(f"{path.name} ({exc.strerror or type(exc).__name__})")
                continue
            decoded = unframe(data)
            if decoded is None:
                self._corrupt(path)
                continue
            self._files.append((seq, len(data), decoded[1]))
            self._bytes += len(data)
            self.points += decoded[1]
        if self._unreadable:
            log.warning(
                "output buffer %s: skipping %d entr%s it cannot read or remove: %s",
                self.dir,
                len(self._unreadable),
                "y" if len(self._unreadable) == 1 else "ies",
                ", ".join(self._unreadable[:5]) + (", ..." if len(self._unreadable) > 5 else ""),
            )
        # New batches go after everything there, junk included, so no name collides with it.
        top = max((seq for seq, _ in seqs), default=-1)
        for left in self.dir.glob("*.tmp"):
            if left.stem.isdigit():
                top = max(top, int(left.stem))
        self._next = top + 1
        self._trim()

    def __len__(self) -> int:
        return len(self._files)

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:020d}{SUFFIX}"

    def _corrupt(self, path: Path) -> None:
        self.corrupt_files += 1
        log.warning("output buffer: skipping damaged batch file %s (torn write or foreign file)", path.name)
        _unlink(path)

    def push(self, text: str, points: int) -> None:
        """Store a batch. When the filesystem is full, the oldest batches make room; OSError when the
        batch cannot be stored at all (the caller counts it as dropped)."""
        data = frame(text, points)
        while True:
            seq = self._next
            self._next += 1
            try:
                self._store(self._path(seq), data)
                break
            except OSError as exc:
                if exc.errno not in FULL or not self._files:
                    raise
                self._drop_oldest()
                self.full_drops += 1
        self._files.append((seq, len(data), points))
        self._bytes += len(data)
        self.points += points
        self._trim()

    def _store(self, path: Path, data: bytes) -> None:
        """Write `data` whole to a temp file, fsync, rename; on any error nothing is left behind."""
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = self._write(fd, view)
                if n <= 0:
                    raise OSError(errno.EIO, f"write returned {n}")
                view = view[n:]
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            _unlink(tmp)
            raise
        _fsync_dir(self.dir)

    def _drop_oldest(self) -> None:
        seq, size, points = self._files.popleft()
        _unlink(self._path(seq))
        self._bytes -= size
        self.points -= points
        self.dropped_points += points

    def _trim(self) -> None:
        while self._bytes > self.max_bytes and len(self._files) > 1:
            self._drop_oldest()

    def peek(self) -> Batch | None:
        while self._files:
            seq, size, points = self._files[0]
            path = self._path(seq)
            try:
                decoded = unframe(read_batch_file(path, self.file_cap))
            except OSError:  # removed, replaced or made unreadable behind our back
                decoded = None
            if decoded is not None:
                return Batch(seq, decoded[0], decoded[1])
            self._drop_oldest()
            self._corrupt(path)
        return None

    def pop(self, batch: Batch) -> None:
        if self._files and self._files[0][0] == batch.key:
            seq, size, points = self._files.popleft()
            _unlink(self._path(seq))
            self._bytes -= size
            self.points -= points


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


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
