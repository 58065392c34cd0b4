"""Follow files like `tail -F`, in complete lines, with positions that survive restarts.

A file is known by (st_dev, st_ino) plus a fingerprint (hash of its first bytes), so a reused inode
is not mistaken for the old file. Per read:
- a file still at its path: truncated (size < position, or its first bytes changed) -> start over at 0;
- a file no longer at its path (renamed, deleted, replaced): the open handle is drained to its end first
  (the rest of a rotated file is not lost), then the new file at the path is read from its start;
- a file seen for the first time: its saved position when the state matches, else its end when it was
  there at start-up and `start_from="end"`, else its start (it was created while we were running);
- a missing file is not an error; it is picked up when it appears.
Content, not only inodes, is tracked across logrotate's `copytruncate` (the copy is a new inode with
the old content, the original is truncated in place):
- a file truncated under us: before reading it from 0, the unread rest [old position, end) is read
  once from its copy, if one is found (a file matched by the glob, or next to it whose name starts
  with the file's name, uncompressed, with the same first bytes); else one note says lines written
  since the last read may be lost;
- a new file whose first bytes match a file we read (now truncated, rotated away or remembered in
  the state file) starts where we were in that file, so a glob never reads a copy twice;
- a new file with the same first bytes as a file we are still following (copied, not yet truncated)
  waits: the original has all its lines.
Content matches on the first bytes and on the TAIL_BYTES just before the position reached, so two
logs that merely begin alike (a banner) are not taken for copies; it needs FINGERPRINT_MIN first
bytes (a smaller file is not told apart from another). A glob skips compressed files (.gz, .bz2,
.xz, .zst, ...): rotated copies that are no longer text.
Only complete lines are returned; a partial last line waits for its newline. Records a writer cuts into several
lines (Docker's json-file: 16 KiB parts, only the last one's `log` ends in a newline) are known by `record_end`:
starting at a file's end, the tailer starts before the record being written; the caller says where its unfinished
record began (`unfinished`), and the saved positions stay before it, across a rotation too, so a restarted agent
reads it whole; when its first parts are gone (rotated away and deleted, truncated), its rest is skipped and said.
At most `max_bytes` are read per call, shared by all files of the pattern, so a backlog is worked off over several
calls.
Positions are written to `state_path` (temp file + rename) when they changed. All methods block:
callers in async code run them through asyncio.to_thread.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

FINGERPRINT_BYTES = 512
FINGERPRINT_MIN = 64
"""Fewer first bytes than this are no evidence that two files hold the same content."""
HISTORY = 32
"""Content read from files since truncated or let go, remembered to recognise their copies."""
TAIL_BYTES = 512
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".z", ".br")
MAX_LINE_BYTES = 64 * 1024 * 1024
"""A line longer than this is skipped (counted in `ReadResult.oversized`) rather than buffered."""
SKIP_BLOCK = 1024 * 1024
"""An over-long line is skipped by scanning for its newline in blocks this big (memory stays bounded)."""
SKIP_MAX_BYTES = 256 * 1024 * 1024
"""Bytes one read scans of an over-long line (the rest: the next read), outside the read budget: the scan only
looks for a newline, so a 100 MiB line is behind us in one gather, not one budget's worth per gather."""
_END_SCAN = 64 * 1024
RECORD_SCAN = 8 * 1024 * 1024
"""Starting at a file's end, bytes looked back through for the start of a record being written; a record whose
parts go back further is skipped (its rest dropped), as a line over MAX_LINE_BYTES is."""

Ident = tuple[int, int]


@dataclass
class FileLines:
    path: str
    lines: list[bytes] = field(default_factory=list)
    oversized: int = 0
    ident: Ident = (0, 0)
    start: int = 0
    """The offset of the first line in its file (`ident`)."""


@dataclass
class _Saved:
    """How far we read a file (by its inode in the state), or a content stream identified by its
    first bytes and the bytes before `offset` (history)."""

    fp: str
    fp_len: int
    offset: int
    path: str = ""
    tail: str = ""
    """Hash of the TAIL_BYTES before `offset` ("" when unknown)."""


@dataclass
class _Open:
    path: str
    fh: BinaryIO
    ident: Ident
    fp: str
    fp_len: int
    offset: int
    skipping: bool = False
    """Inside a line longer than MAX_LINE_BYTES: drop bytes up to its newline."""
    eof: bool = False
    """The last read reached the end of the file (what is left, if anything, is a partial line)."""
    drain_only: bool = False
    """A file rotated away while we were not running: read to its end, then let go."""
    began: int = 0
    """Where this run began reading this content (0 after a truncation)."""
    mid_record: bool = False
    """At the rest of a record whose first lines we do not have: drop lines up to the one that ends it."""
    tail: str = ""
    tail_at: int = 0
    """`tail` hashes the TAIL_BYTES before `tail_at` (brought up to `offset` after each read)."""

    def seen(self) -> _Saved:
        return _Saved(self.fp, self.fp_len, self.tail_at, tail=self.tail)

    def update_tail(self) -> None:
        if self.tail_at != self.offset or not self.tail:
            self.tail, self.tail_at = _tail_hash(self.fh, self.offset), self.offset


def _open_raw(path: str) -> BinaryIO:
    """Unbuffered: a buffered reader serves a seek back into its buffer from memory, so a file truncated and
    written again in place would read as its old bytes (its truncation unseen, old lines read twice)."""
    return open(path, "rb", buffering=0)


def _fingerprint(fh: BinaryIO, length: int) -> str:
    fh.seek(0)
    return hashlib.sha1(fh.read(length)).hexdigest()


def _tail_hash(fh: BinaryIO, offset: int) -> str:
    start = max(0, offset - TAIL_BYTES)
    fh.seek(start)
    return hashlib.sha1(fh.read(offset - start)).hexdigest()


def _matches(fh: BinaryIO, size: int, seen: _Saved, cache: dict[int, str]) -> bool:
    """Does this file hold the content `seen` describes: same first bytes, same bytes before its offset?"""
    if seen.fp_len < FINGERPRINT_MIN or size < max(seen.fp_len, seen.offset):
        return False
    if seen.fp_len not in cache:
        cache[seen.fp_len] = _fingerprint(fh, seen.fp_len)
    if cache[seen.fp_len] != seen.fp:
        return False
    return not seen.tail or _tail_hash(fh, seen.offset) == seen.tail


def _same_prefix(a: BinaryIO, b: BinaryIO, size: int) -> bool:
    """The first `size` bytes of two files are equal (a copy still being written)."""
    a.seek(0)
    b.seek(0)
    while size > 0:
        n = min(size, 1 << 20)
        x = a.read(n)
        if not x or x != b.read(n):
            return False
        size -= len(x)
    return True


class Tailer:
    """Follows every file matching `pattern` (a path or a glob)."""

    def __init__(
        self,
        pattern: str,
        start_from: str = "end",
        max_bytes: int = 16 * 1024 * 1024,
        state_path: Path | None = None,
        max_line: int = MAX_LINE_BYTES,
        record_end: Callable[[bytes], bool] | None = None,
    ):
        self.pattern = pattern
        self.start_from = start_from
        self.max_bytes = max(1, int(max_bytes))
        self.state_path = state_path
        self.max_line = max_line
        self.record_end = record_end
        """Does this line end a record? None: every line is a record."""
        self.bytes_read = 0
        self.open_errors: dict[str, str] = {}
        """Files that exist but cannot be opened (permissions), by path; cleared when they open."""
        self._is_glob = glob.has_magic(pattern)
        self._open: dict[str, _Open] = {}
        self._saved: dict[Ident, _Saved] = {}
        self._first = True
        self._had_state = False
        """Positions were loaded: a file they do not know appeared while we were down, read it whole."""
        self._last_state: str | None = None
        self.state_error: str | None = None
        """The last problem reading or writing the state file (None when fine)."""
        self._history: deque[_Saved] = deque(maxlen=HISTORY)
        self._recovered: list[_Open] = []
        self._retired: set[Ident] = set()
        """Let go of in this read: remembered until the caller has said whether its unfinished record is in one."""
        self._distinct: set[Ident] = set()
        """New files that begin like a followed one but are not copies of it."""
        self.notes: list[str] = []
        """Things the caller should log once (a truncated file whose copy was not found); it clears them."""
        self.unfinished: tuple[Ident, int] | None = None
        """(file, offset) where the record the caller has not finished began (set after each read; a one-path
        pattern). Saved positions stay before it: that file's is this offset, the file read after it (the log
        rotated) is saved where this run began it, a rotated-away file holding it is remembered until then."""
        self._resume: tuple[Ident, int] | None = None
        """The last run's `unfinished`: the first read of this run must start there, else that record's rest is
        skipped (its first parts are gone)."""
        self.cut = 0
        """Records whose first parts were gone, their rest skipped (each also in `notes`)."""
        self._load_state()

    # -- state file -------------------------------------------------------------------------------

    def _load_state(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            data = json.loads(self.state_path.read_text())
            for entry in data["files"]:
                self._saved[(int(entry["dev"]), int(entry["ino"]))] = _Saved(
                    str(entry["fp"]),
                    int(entry["fp_len"]),
                    int(entry["offset"]),
                    str(entry.get("path", "")),
                    str(entry.get("tail", "")),
                )
            mark = data.get("unfinished")
            if mark is not None:
                self._resume = ((int(mark[0]), int(mark[1])), int(mark[2]))
            self._had_state = bool(self._saved)
            self._last_state = None
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            self._saved.clear()
            self._resume = None
            self.state_error = f"state file {self.state_path} unreadable ({type(exc).__name__}), starting fresh"

    def save_state(self) -> None:
        if self.state_path is None:
            return
        entries = [
            {
                "path": h.path,
                "dev": h.ident[0],
                "ino": h.ident[1],
                "fp": h.fp,
                "fp_len": h.fp_len,
                **self._position(h),
            }
            for h in self._open.values()
        ]
        held = {h.ident for h in self._open.values()}
        mark = self.unfinished
        entries += [
            {
                "path": s.path,
                "dev": k[0],
                "ino": k[1],
                "fp": s.fp,
                "fp_len": s.fp_len,
                **(
                    {"offset": mark[1], "tail": ""}
                    if mark is not None and mark[0] == k and 0 <= mark[1] <= s.offset
                    else {"offset": s.offset, "tail": s.tail}
                ),
            }
            for k, s in self._saved.items()
            if k not in held
        ]
        doc: dict[str, object] = {"version": 1, "pattern": self.pattern, "files": entries}
        if mark is not None:
            doc["unfinished"] = [*mark[0], mark[1]]
        text = json.dumps(doc, sort_keys=True)
        if text == self._last_state:
            return
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
            self._last_state = text
            self.state_error = None
        except OSError as exc:
            self.state_error = f"cannot write state file {self.state_path}: {exc.strerror or exc}"
            try:
                tmp.unlink()  # a full disk leaves no half-written temp file behind
            except OSError:
                pass

    def _position(self, h: _Open) -> dict[str, int | str]:
        """The offset to save and the hash of the bytes before it: before the caller's unfinished record."""
        mark = self.unfinished
        if mark is None:
            return {"offset": h.offset, "tail": h.tail if h.tail_at == h.offset else ""}
        if mark[0] == h.ident and 0 <= mark[1] <= h.offset:
            return {"offset": mark[1], "tail": _tail_hash(h.fh, mark[1])}
        return {"offset": h.began, "tail": ""}  # it began in a file before this one (or content truncated since)

    # -- reading ----------------------------------------------------------------------------------

    def _paths(self) -> list[str]:
        if self._is_glob:
            return sorted(
                p for p in glob.glob(self.pattern) if os.path.isfile(p) and not p.lower().endswith(COMPRESSED)
            )
        return [self.pattern]

    def read(self, max_bytes: int | None = None) -> list[FileLines]:
        """Complete new lines of every file, at most `max_bytes` (default: the configured) in all.

        `bytes_read` tells how much of that was used."""
        budget = start = max(1, max_bytes or self.max_bytes)
        out: list[FileLines] = []
        idents: dict[str, Ident] = {}
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError:
                continue
            idents[path] = (st.st_dev, st.st_ino)
        if self._first and self._saved:
            self._find_rotated(set(idents.values()))
        blocked: set[str] = set()
        visited: set[str] = set()
        # Files already open: go on, or drain what was rotated away before opening its successor.
        # Rotated-away ones first, so a path they leave is free for a truncated file's copy.
        for path, h in sorted(self._open.items(), key=lambda item: idents.get(item[0]) == item[1].ident):
            if budget <= 0:
                break
            res = FileLines(path)
            visited.add(path)
            if idents.get(path) == h.ident and not h.drain_only:
                self._check_truncated(h)
                budget = self._read_recovered(budget, out, visited)  # older lines first
                out.append(res)
                budget -= self._read_lines(h, budget, res)
                continue
            out.append(res)
            budget -= self._read_lines(h, budget, res)
            if not h.eof:
                blocked.add(path)  # rest of the old file first
            elif path in idents or h.drain_only or not self._linked(h):
                # Drained and replaced (or deleted): a partial last line will not be completed, dropped.
                self._retire(h)
            # else: renamed and nothing new at the path yet; the writer may still append to it.
        held = {h.ident for h in self._open.values()}
        for path, ident in idents.items():
            if budget <= 0:
                break
            if path in self._open or path in blocked or ident in held:
                continue
            opened = self._open_file(path, ident, idents)
            budget = self._read_recovered(budget, out, visited)
            if opened is None:
                continue
            held.add(ident)
            res = FileLines(path)
            out.append(res)
            visited.add(path)
            budget -= self._read_lines(opened, budget, res)
        self._recovered.clear()  # left for the next call when the budget ran out
        for h in self._open.values():
            h.update_tail()
        self._first = False
        # Forget rotated files' positions once no matching path has them (nor the caller's unfinished record).
        live = set(idents.values()) | held | self._retired
        if self.unfinished is not None:
            live.add(self.unfinished[0])
        self._retired.clear()
        for ident in [k for k in self._saved if k not in live]:
            del self._saved[ident]
        self.bytes_read = start - budget
        for path in [p for p in self.open_errors if p not in idents]:
            del self.open_errors[path]
        return [r for r in out if r.lines or r.oversized]

    def _read_recovered(self, budget: int, out: list[FileLines], visited: set[str]) -> int:
        """Reads the copies `_recover` just found (their unread rest, older than anything after)."""
        while self._recovered and budget > 0:
            h = self._recovered.pop(0)
            res = FileLines(h.path)
            out.append(res)
            visited.add(h.path)
            budget -= self._read_lines(h, budget, res)
        return budget

    def _find_rotated(self, matched: set[Ident]) -> None:
        """Files we were reading that were renamed while we were down (same directory, as logrotate
        does): their unread rest is read before they are forgotten."""
        for ident, saved in list(self._saved.items()):
            if ident in matched or not saved.path:
                continue
            try:
                entries = list(os.scandir(os.path.dirname(saved.path) or "."))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.inode() != ident[1] or not entry.is_file(follow_symlinks=False):
                        continue
                    fh = _open_raw(entry.path)
                except OSError:
                    continue
                st = os.fstat(fh.fileno())
                if (
                    (st.st_dev, st.st_ino) == ident
                    and saved.fp_len <= st.st_size
                    and saved.offset <= st.st_size
                    and _fingerprint(fh, saved.fp_len) == saved.fp
                    and entry.path not in self._open
                ):
                    del self._saved[ident]
                    self._open[entry.path] = _Open(
                        entry.path, fh, ident, saved.fp, saved.fp_len, saved.offset, drain_only=True, began=saved.offset
                    )
                else:
                    fh.close()
                break

    def _open_file(self, path: str, ident: Ident, idents: dict[str, Ident]) -> _Open | None:
        try:
            fh = _open_raw(path)
            st = os.fstat(fh.fileno())
        except OSError as exc:
            self.open_errors[path] = exc.strerror or type(exc).__name__
            return None
        self.open_errors.pop(path, None)
        if (st.st_dev, st.st_ino) != ident:  # replaced between stat and open: next read
            fh.close()
            return None
        ident = (st.st_dev, st.st_ino)
        saved = self._saved.get(ident)
        offset = 0
        inside = False
        cache: dict[int, str] = {}
        if (
            saved is not None
            and st.st_size >= saved.fp_len
            and _fingerprint(fh, saved.fp_len) == saved.fp
            and saved.offset <= st.st_size
        ):
            offset = saved.offset
        else:
            if saved is not None and saved.offset:
                # Same inode, other first bytes: truncated while we were not running (copytruncate).
                self._history.append(saved)
                self._recover(path, saved, ident)
            if any(
                self._copy_of(fh, st.st_size, ident, h, cache)
                for h in self._open.values()
                if not h.drain_only and idents.get(h.path) == h.ident and h.ident != ident
            ):
                fh.close()  # a copy of a file we follow, not yet truncated: the original has these lines
                return None
            known = [seen.offset for seen in reversed(self._history) if _matches(fh, st.st_size, seen, cache)]
            known += [s.offset for k, s in self._saved.items() if k != ident and _matches(fh, st.st_size, s, cache)]
            if known:
                offset = min(known[0], st.st_size)  # a copy of content we read: only its unread rest
            elif self._first and self.start_from == "end" and not self._had_state:
                offset, inside = self._end_offset(fh, st.st_size)
        self._saved.pop(ident, None)
        fp_len = min(FINGERPRINT_BYTES, st.st_size)
        h = _Open(path, fh, ident, _fingerprint(fh, fp_len), fp_len, offset, began=offset)
        if inside:  # the end is inside a line (record) longer than we look back: its rest is no line
            h.skipping = self.record_end is None
            h.mid_record = self.record_end is not None
        self._open[path] = h
        return h

    def _copy_of(self, fh: BinaryIO, size: int, ident: Ident, h: _Open, cache: dict[int, str]) -> bool:
        """Is this new file a copy of the followed file `h` (whole up to our position, or a copy still
        being written: equal to h's first `size` bytes)?"""
        if ident in self._distinct:
            return False
        if _matches(fh, size, h.seen(), cache):
            return True
        seen = h.seen()
        if size < seen.offset and _matches(fh, size, _Saved(seen.fp, seen.fp_len, 0), cache):
            if _same_prefix(fh, h.fh, size):
                return True
            if len(self._distinct) > 1000:
                self._distinct.clear()
            self._distinct.add(ident)  # begins alike, differs later: its own file
        return False

    def _recover(self, path: str, seen: _Saved, skip: Ident) -> None:
        """`path` was truncated after we had read `seen.offset` bytes of it: find its copy (in the glob,
        or next to it, named after it) and queue the copy's unread rest for reading, once."""
        directory, base = os.path.split(path)
        candidates = set(glob.glob(self.pattern)) if self._is_glob else set()
        try:
            candidates.update(
                e.path for e in os.scandir(directory or ".") if e.name.startswith(base) and e.name != base
            )
        except OSError:
            pass
        candidates.discard(path)
        found = []
        busy = False
        for cand in candidates:
            if cand in self._open:
                busy = True  # still draining what was there: the copy is recognised when it opens
                continue
            if cand.lower().endswith(COMPRESSED):
                continue
            try:
                fh = _open_raw(cand)
                st = os.fstat(fh.fileno())
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            if ident != skip and st.st_size >= seen.offset and _matches(fh, st.st_size, seen, {}):
                found.append((st.st_mtime, cand, fh, ident, st.st_size))
            else:
                fh.close()
        found.sort(reverse=True)
        for _, _, fh, _, _ in found[1:]:
            fh.close()
        if not found:
            if seen.fp_len >= FINGERPRINT_MIN and not busy:
                self.notes.append(
                    f"{path} was truncated and no uncompressed copy of it was found next to it: "
                    "lines written to it since the last read are lost"
                )
            return
        _, cand, fh, ident, size = found[0]
        fp_len = min(FINGERPRINT_BYTES, size)
        self._open[cand] = _Open(
            cand, fh, ident, _fingerprint(fh, fp_len), fp_len, seen.offset, drain_only=True, began=seen.offset
        )
        self._recovered.append(self._open[cand])

    def _end_offset(self, fh: BinaryIO, size: int) -> tuple[int, bool]:
        """Just after the last newline near the end, so a line being written is read whole later; with
        `record_end`, after the last line that ends a record, so a record being written is read whole too.
        Also: whether that is inside a line (record) begun further back than we look (its rest is to be skipped)."""
        start = max(0, size - _END_SCAN)
        fh.seek(start)
        tail = fh.read(size - start)
        nl = tail.rfind(b"\n")
        if nl < 0:
            return (size, True) if start else (0, False)
        end = start + nl + 1
        if self.record_end is None or self.record_end(tail[tail.rfind(b"\n", 0, nl) + 1 : nl]):
            return end, False
        start = max(0, end - RECORD_SCAN)
        fh.seek(start)
        lines = fh.read(end - 1 - start).split(b"\n")
        at = end
        for i in range(len(lines) - 1, 1 if start else 0, -1):  # a first line cut by `start` is not judged
            at -= len(lines[i]) + 1
            if self.record_end(lines[i - 1]):
                return at, False
        return (end, True) if start else (0, False)

    def _check_truncated(self, h: _Open) -> None:
        try:
            size = os.fstat(h.fh.fileno()).st_size
        except OSError:
            return
        if size < h.offset or (h.fp_len and (size < h.fp_len or _fingerprint(h.fh, h.fp_len) != h.fp)):
            if h.offset:
                seen = h.seen()  # as of the last read: the content is gone now
                self._history.append(seen)
                self._recover(h.path, seen, h.ident)
            h.offset = h.began = 0
            if self.unfinished is not None and self.unfinished[0] == h.ident:
                self.unfinished = (h.ident, -1)  # its first parts are gone: a restart cannot read it whole
            h.tail, h.tail_at = "", 0
            h.skipping = False
            h.fp_len = min(FINGERPRINT_BYTES, size)
            h.fp = _fingerprint(h.fh, h.fp_len)
        elif h.fp_len < FINGERPRINT_BYTES and size > h.fp_len:
            h.fp_len = min(FINGERPRINT_BYTES, size)
            h.fp = _fingerprint(h.fh, h.fp_len)

    @staticmethod
    def _skip_line(h: _Open) -> bool:
        """Moves h past the over-long line it is inside (to after its newline); False while its end is not
        written yet or SKIP_MAX_BYTES were scanned (then the next read goes on)."""
        h.fh.seek(h.offset)
        scanned = 0
        while scanned < SKIP_MAX_BYTES:
            block = h.fh.read(SKIP_BLOCK)
            nl = block.find(b"\n")
            if nl >= 0:
                h.offset += nl + 1
                h.skipping = False
                return True
            h.offset += len(block)
            scanned += len(block)
            if len(block) < SKIP_BLOCK:
                h.eof = True
                return False
        h.eof = False
        return False

    def _read_lines(self, h: _Open, budget: int, res: FileLines) -> int:
        """Reads complete lines from h's position; returns the bytes consumed from the budget."""
        if self._resume is not None:  # the first read of a run: where the last run's unfinished record began?
            h.mid_record = h.mid_record or (h.ident, h.offset) != self._resume
            self._resume = None
        used = self._read_raw(h, budget, res)
        if h.mid_record and res.lines and self.record_end is not None:
            self._drop_rest(h, res, self.record_end)
        return used

    def _drop_rest(self, h: _Open, res: FileLines, record_end: Callable[[bytes], bool]) -> None:
        """Drops the rest of a record whose first lines we do not have, up to the line that ends it."""
        found = next((i for i, line in enumerate(res.lines) if record_end(line)), None)
        drop = len(res.lines) if found is None else found + 1
        res.start += sum(len(line) + 1 for line in res.lines[:drop])
        del res.lines[:drop]
        if found is not None:
            h.mid_record = False
            self.cut += 1
            self.notes.append(
                f"{h.path}: skipped the rest of a line its writer cut into parts, whose first parts were not read "
                "(rotated away and deleted or truncated while the agent was stopped, or begun long before it started)"
            )

    def _read_raw(self, h: _Open, budget: int, res: FileLines) -> int:
        if h.skipping and not self._skip_line(h):
            return 0
        h.fh.seek(h.offset)
        res.ident, res.start = h.ident, h.offset
        data = h.fh.read(budget)
        h.eof = len(data) < budget
        if not data:
            return 0
        used = len(data)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < budget:
                # Partial line at EOF: wait for its newline, unless it is longer than any line should be.
                if len(data) > self.max_line:
                    h.offset += len(data)
                    h.skipping = True
                    res.oversized += 1
                return used
            # A line longer than the budget: read on to its newline (bounded).
            rest = h.fh.read(self.max_line)
            nl = rest.find(b"\n")
            h.eof = nl < 0 and len(rest) < self.max_line
            if nl < 0:
                if len(data) + len(rest) > self.max_line:
                    h.offset += len(data) + len(rest)
                    h.skipping = True
                    res.oversized += 1
                    self._skip_line(h)  # the rest of it now, not one budget's worth per gather
                return used
            res.lines.append(data + rest[:nl])
            h.offset += len(data) + nl + 1
            return used + nl + 1
        chunk = data[:end]
        h.offset += end + 1
        res.lines.extend(chunk.split(b"\n"))
        return used

    @staticmethod
    def _linked(h: _Open) -> bool:
        """False once the file was deleted (no name left), so its position is not worth keeping."""
        try:
            return os.fstat(h.fh.fileno()).st_nlink > 0
        except OSError:
            return False

    def _retire(self, h: _Open) -> None:
        """Closes a drained rotated file; remembers its position only if it still exists somewhere."""
        linked = self._linked(h)
        h.update_tail()
        h.fh.close()
        del self._open[h.path]
        self._history.append(h.seen())
        if linked:
            self._saved[h.ident] = _Saved(h.fp, h.fp_len, h.offset, h.path, h.tail)
            self._retired.add(h.ident)

    def close(self) -> None:
        self.save_state()
        for h in self._open.values():
            h.fh.close()
        self._open.clear()
