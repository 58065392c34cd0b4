"""journal.py against a real journal file (systemd-journal-remote writes it, journalctl reads it)."""

from __future__ import annotations

import os

import pytest

from telegraf_llm_input.journal import JournalDenied, JournalReader, JournalSpec, message_text
from tests.support.journal import JournalFile


@pytest.fixture
def journal(tmp_path):
    return JournalFile(tmp_path / "system.journal")


def reader(journal: JournalFile, state, start_from="end", unit="ollama.service") -> JournalReader:
    return JournalReader(JournalSpec(unit=unit, files=[str(journal.path)]), state, start_from)


def test_starts_at_the_end_then_reads_each_entry_once(journal, tmp_path):
    journal.write("old 1", "old 2")
    r = reader(journal, tmp_path / "cursor.json")
    assert r.read() == []
    journal.write("new 1", "new 2")
    assert r.read() == ["new 1", "new 2"]
    assert r.read() == []
    journal.write("new 3")
    assert r.read() == ["new 3"]


def test_a_restart_neither_loses_nor_repeats(journal, tmp_path):
    state = tmp_path / "cursor.json"
    journal.write("before")
    first = reader(journal, state)
    assert first.read() == []
    journal.write("a", "b")
    assert first.read() == ["a", "b"]
    journal.write("c", "d")  # written while the agent is down
    second = reader(journal, state)
    assert second.read() == ["c", "d"]


def test_an_empty_journal_is_read_from_its_first_entry(journal, tmp_path):
    other = JournalFile(journal.path, unit="other.service")
    other.write("someone else")
    r = reader(journal, None)
    assert r.read() == []
    journal.write("first")
    assert r.read() == ["first"]


def test_only_the_units_entries(journal, tmp_path):
    r = reader(journal, None, start_from="start")
    JournalFile(journal.path, unit="sshd.service").write("not ours")
    journal.write("ours")
    assert r.read() == ["ours"]


def test_a_byte_budget_leaves_the_rest_for_the_next_read(journal, tmp_path):
    r = reader(journal, None, start_from="start")
    journal.write(*(f"line {i}" for i in range(50)))
    got = r.read(max_bytes=1)
    assert got == ["line 0"]
    rest = []
    while chunk := r.read(max_bytes=2000):
        rest.extend(chunk)
    assert rest == [f"line {i}" for i in range(1, 50)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_journal_says_so(journal, tmp_path):
    journal.write("x")
    journal.path.chmod(0o000)
    with pytest.raises(JournalDenied):
        reader(journal, None, start_from="start").read()


def test_message_forms():
    assert message_text({"MESSAGE": "hi"}) == "hi"
    assert message_text({"MESSAGE": list(b"caf\xc3\xa9 \xff")}) == "café \ufffd"
    assert message_text({"MESSAGE": None}) is None
