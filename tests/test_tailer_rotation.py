"""Log rotation the way logrotate does it, on real files: rename (`create`), `copytruncate`, with and
without the copy in the glob, `dateext`, compressed copies, and rotation while the agent is down.
Every line written must be read exactly once, except where the docs say it cannot be."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from telegraf_llm_input.tailer import Tailer


class Writer:
    """An application appending numbered lines to its log (opened in append mode, as loggers do)."""

    def __init__(self, path: Path):
        self.path = path
        self.n = 0

    def write(self, count: int) -> None:
        with open(self.path, "a") as f:
            for _ in range(count):
                f.write(f'{{"seq": {self.n}, "pad": "{"x" * 30}"}}\n')
                self.n += 1


def copytruncate(path: Path, copy: Path) -> None:
    """logrotate's copytruncate: copy the file, then truncate the original in place (same inode)."""
    shutil.copyfile(path, copy)
    os.truncate(path, 0)


def shift(path: Path, keep: int = 3, compress_from: int | None = None) -> None:
    """logrotate's numbering: app.log.N-1 -> app.log.N, ...; optionally gzip the older ones."""
    for i in range(keep, 0, -1):
        src = Path(f"{path}.{i}")
        if src.exists():
            src.rename(f"{path}.{i + 1}")
    if compress_from is not None:
        for i in range(compress_from, keep + 2):
            old = Path(f"{path}.{i}")
            if old.exists():
                with open(old, "rb") as f, gzip.open(f"{old}.gz", "wb") as g:
                    g.write(f.read())
                old.unlink()


def seqs(tailer: Tailer) -> list[int]:
    out = []
    for _ in range(10):  # until nothing is left to read
        got = [line for batch in tailer.read() for line in batch.lines]
        if not got:
            break
        out += [int(line.split(b":")[1].split(b",")[0]) for line in got]
    return out


def start(tmp_path: Path, pattern: str, first: int):
    """A log with `first` lines and a Tailer that has read it once: (log, writer, tailer, lines read)."""
    log = tmp_path / "app.log"
    w = Writer(log)
    w.write(first)
    t = Tailer(str(tmp_path / pattern), "beginning")
    return log, w, t, seqs(t)


def test_glob_with_copytruncate_reads_the_copy_tail_once(tmp_path):
    log, w, t, got = start(tmp_path, "app.log*", 10)
    for _ in range(4):  # four rotations; the copy of the first is numbered on, never read again
        w.write(5)  # written since the last read: only in the copy after the truncation
        shift(log)
        copytruncate(log, Path(f"{log}.1"))
        w.write(3)
        got += seqs(t)
    assert got == list(range(w.n)), "every line exactly once"


def test_glob_copy_seen_before_the_truncation_is_not_read_twice(tmp_path):
    log, w, t, got = start(tmp_path, "app.log*", 10)
    w.write(4)
    shutil.copyfile(log, f"{log}.1")  # logrotate has copied, not yet truncated, when we read
    got += seqs(t)
    w.write(2)  # between the copy and the truncation: in neither file (logrotate's own window)
    os.truncate(log, 0)
    w.write(3)
    got += seqs(t)
    assert got == list(range(14)) + list(range(16, 19))


def test_copytruncate_without_a_glob_recovers_lines_since_the_last_read(tmp_path):
    log, w, t, got = start(tmp_path, "app.log", 10)
    w.write(6)
    copytruncate(log, tmp_path / "app.log-20261202")  # dateext
    w.write(2)
    got += seqs(t)
    w.write(3)
    shift(log)
    copytruncate(log, Path(f"{log}.1"))  # numbered
    got += seqs(t)
    assert got == list(range(w.n))
    assert t.notes == []


def test_copytruncate_with_an_immediately_compressed_copy_loses_only_the_unread_lines_and_says_so(tmp_path):
    log, w, t, got = start(tmp_path, "app.log*", 10)
    w.write(4)
    copytruncate(log, Path(f"{log}.1"))
    shift(log, compress_from=1)  # `compress` without `delaycompress`: only app.log.2.gz is left
    w.write(3)
    got += seqs(t)
    assert got == list(range(10)) + list(range(14, 17))  # the compressed copy is never read as text
    assert len(t.notes) == 1 and "truncated" in t.notes[0] and "lost" in t.notes[0]


def test_rename_rotation_with_glob_and_compression_reads_each_line_once(tmp_path):
    log, w, t, got = start(tmp_path, "app.log*", 5)
    for _ in range(4):
        w.write(4)
        shift(log, compress_from=3)
        log.rename(f"{log}.1")  # create mode: rename, then a new file
        w.write(2)
        got += seqs(t)
    assert got == list(range(w.n))


def test_copytruncate_while_the_agent_is_down_recovers_from_the_copy(tmp_path):
    log = tmp_path / "app.log"
    state = tmp_path / "state.json"
    w = Writer(log)
    w.write(10)
    t = Tailer(str(tmp_path / "app.log*"), "end", state_path=state)
    assert seqs(t) == []
    w.write(5)
    got = seqs(t)
    t.close()
    w.write(4)  # the agent is down now
    copytruncate(log, Path(f"{log}.1"))
    w.write(2)
    t = Tailer(str(tmp_path / "app.log*"), "end", state_path=state)
    got += seqs(t)
    assert got == list(range(10, w.n))
    t.close()


def test_state_file_on_a_full_filesystem_is_an_error_not_a_torn_file(tmp_path):
    from tests.support.smallfs import fill, small_tmpfs

    with small_tmpfs(tmp_path / "fs", "16k") as fs:
        log = tmp_path / "app.log"
        w = Writer(log)
        w.write(10)
        t = Tailer(str(log), "beginning", state_path=fs / "logs" / "app.json")
        assert len(seqs(t)) == 10
        t.save_state()
        fill(fs)
        w.write(3)
        assert seqs(t) == [10, 11, 12]  # reading goes on
        t.save_state()
        assert t.state_error and "No space left" in t.state_error
        assert sorted(p.name for p in (fs / "logs").iterdir()) == ["app.json"]
        assert '"offset"' in (fs / "logs" / "app.json").read_text()  # the last good state, whole


def test_logs_that_only_begin_alike_are_not_taken_for_copies(tmp_path):
    """Two workers' logs, and each new file after a rename rotation, start with the same 600-byte
    banner: same first 512 bytes, different content after. Every line of each is read."""
    banner = '{"event": "start", "config": "' + "c" * 560 + '"}\n'
    a, b = tmp_path / "app.log.w1", tmp_path / "app.log.w2"
    a.write_text(banner + '{"seq": 1}\n')
    t = Tailer(str(tmp_path / "app.log*"), "beginning")
    got = [line for batch in t.read() for line in batch.lines]
    b.write_text(banner + '{"seq": 2}\n{"seq": 3}\n')  # appears while w1 is followed
    got += [line for batch in t.read() for line in batch.lines]
    a.rename(tmp_path / "app.log.w1.old")
    (tmp_path / "app.log.w1").write_text(banner + '{"seq": 4}\n')  # a new file after rotation
    for _ in range(3):
        got += [line for batch in t.read() for line in batch.lines]
    assert sorted(got) == sorted([banner.strip().encode()] * 3 + [b'{"seq": %d}' % i for i in range(1, 5)])
