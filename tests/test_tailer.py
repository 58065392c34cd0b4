"""The file follower on real files: long lines, budgets and the state file."""

from __future__ import annotations

import json
import os

from telegraf_llm_input.tailer import Tailer


def lines_of(tailer: Tailer) -> list[bytes]:
    return [line for batch in tailer.read() for line in batch.lines]


def test_line_longer_than_the_budget_is_read_whole(tmp_path):
    log = tmp_path / "a.log"
    long = b"x" * 5000
    log.write_bytes(b"short\n" + long + b"\nafter\n")
    t = Tailer(str(log), "beginning", max_bytes=1000)
    got = []
    for _ in range(20):
        got += lines_of(t)
    assert got == [b"short", long, b"after"]


def test_line_over_max_line_is_skipped_and_counted(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"one\n" + b"y" * 3000)
    t = Tailer(str(log), "beginning", max_bytes=1000, max_line=2000)
    batches = [b for _ in range(10) for b in t.read()]
    assert [line for b in batches for line in b.lines] == [b"one"]
    assert sum(b.oversized for b in batches) == 1
    with open(log, "ab") as f:
        f.write(b"y" * 100 + b"\ntwo\n")
    got = [b for _ in range(5) for b in t.read()]
    assert [line for b in got for line in b.lines] == [b"two"]
    assert sum(b.oversized for b in got) == 0


def test_state_file_round_trip_and_corrupt_state(tmp_path):
    log = tmp_path / "a.log"
    state = tmp_path / "st" / "a.json"
    log.write_bytes(b"1\n2\n3")
    t = Tailer(str(log), "beginning", state_path=state)
    assert lines_of(t) == [b"1", b"2"]
    t.close()
    saved = json.loads(state.read_text())
    st = os.stat(log)
    assert saved["files"][0]["offset"] == 4 and saved["files"][0]["ino"] == st.st_ino
    assert not list(state.parent.glob("*.tmp"))
    with open(log, "ab") as f:
        f.write(b"\n4\n")
    t = Tailer(str(log), "end", state_path=state)
    assert lines_of(t) == [b"3", b"4"]
    t.close()
    state.write_text("{not json")
    t = Tailer(str(log), "beginning", state_path=state)
    assert t.state_error and "unreadable" in t.state_error
    assert lines_of(t) == [b"1", b"2", b"3", b"4"]
    t.close()


def test_from_end_starts_after_the_last_complete_line(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"old\nhalf-wri")
    t = Tailer(str(log), "end")
    assert lines_of(t) == []
    with open(log, "ab") as f:
        f.write(b"tten\nnew\n")
    assert lines_of(t) == [b"half-written", b"new"]


def test_from_end_inside_a_line_longer_than_it_looks_back_skips_its_rest(tmp_path):
    """The end is inside a line begun more than 64 KiB back: its rest is no line, the next line is read."""
    log = tmp_path / "a.log"
    log.write_bytes(b"old\n" + b"y" * 100_000)
    t = Tailer(str(log), "end")
    assert lines_of(t) == []
    with open(log, "ab") as f:
        f.write(b"y tail\nnew\n")
    assert lines_of(t) == [b"new"]


def _ends(line: bytes) -> bool:
    """Records of a test format: a line ending in `+` goes on in the next line."""
    return not line.endswith(b"+")


def test_from_end_starts_before_the_record_being_written(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"old\nold+\nold\nbegun+\n" + b"more+\n" * 3 + b"half")
    t = Tailer(str(log), "end", record_end=_ends)
    [batch] = t.read()
    assert batch.lines == [b"begun+", b"more+", b"more+", b"more+"]
    assert log.read_bytes()[batch.start :].startswith(b"begun+\n")
    with open(log, "ab") as f:
        f.write(b" done\nnext\n")
    assert lines_of(t) == [b"half done", b"next"]


def test_from_end_inside_a_record_begun_too_far_back_skips_its_rest_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("telegraf_llm_input.tailer.RECORD_SCAN", 20)
    log = tmp_path / "a.log"
    log.write_bytes(b"old\nbegun+\n" + b"more+\n" * 5)
    t = Tailer(str(log), "end", record_end=_ends)
    assert lines_of(t) == []
    with open(log, "ab") as f:
        f.write(b"done\nnext+\nnext done\n")
    assert lines_of(t) == [b"next+", b"next done"]
    assert t.cut == 1 and len(t.notes) == 1 and str(log) in t.notes[0]


def test_a_record_unfinished_at_a_rotation_is_read_whole_after_a_restart(tmp_path):
    """The caller's unfinished record began in a file rotated away since: the saved positions are before it, in
    the rotated file, and the new file from its start; a new run reads the rotated file's rest first."""
    log, state = tmp_path / "a.log", tmp_path / "pos.json"
    log.write_bytes(b"")
    t = Tailer(str(log), "end", state_path=state, record_end=_ends)
    t.read()
    with open(log, "ab") as f:
        f.write(b"whole\nbegun+\n")
    [batch] = t.read()
    assert batch.lines == [b"whole", b"begun+"]
    t.unfinished = (batch.ident, batch.start + len(b"whole\n"))
    log.rename(tmp_path / "a.log.1")
    log.write_bytes(b"more+\n")
    assert [b.lines for b in t.read()] == [[b"more+"]]
    t.close()
    with open(log, "ab") as f:
        f.write(b"done\n")
    again = Tailer(str(log), "end", state_path=state, record_end=_ends)
    assert lines_of(again) == [b"begun+", b"more+", b"done"]
    assert again.cut == 0 and again.notes == []
