"""The disk buffer on a real full filesystem (a 64 KiB tmpfs), with junk in its directory, and with
short or failing writes (an injected writer: the one fault a tmpfs cannot produce on demand)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest
import yaml

from telegraf_llm_input.sinks.buffer import DiskBuffer, frame
from tests.support.procs import free_port, wait_until
from tests.support.smallfs import fill, small_tmpfs


def batch(i: int, lines: int = 40) -> tuple[str, int]:
    return "".join(f'llm_t,server=s{j} seq={i}i,pad="{"x" * 40}" {i * 1000 + j}\n' for j in range(lines)), lines


def drain(buffer: DiskBuffer) -> list[int]:
    """Seq numbers of every batch still buffered, oldest first (as the sender would replay them)."""
    seqs = []
    while (b := buffer.peek()) is not None:
        seqs.append(int(b.text.split("seq=", 1)[1].split("i", 1)[0]))
        buffer.pop(b)
    return seqs


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix == ".tmp" or p.stat().st_size == 0)


def test_full_filesystem_drops_oldest_keeps_newest_and_leaves_nothing_torn(tmp_path):
    with small_tmpfs(tmp_path / "fs", "64k") as fs:
        buf = DiskBuffer(fs / "buf", max_bytes=100_000_000)  # the bound is far away: the disk fills first
        size = len(frame(*batch(0)))
        pushed = 0
        for i in range(30):  # ~3.5 KB each: about twice what fits
            buf.push(*batch(i))
            pushed += 40
        assert buf.full_drops > 0, "the filesystem never filled: the test proves nothing"
        assert buf.dropped_points == buf.full_drops * 40
        assert buf.points + buf.dropped_points == pushed
        assert leftovers(fs / "buf") == []
        again = DiskBuffer(fs / "buf", max_bytes=100_000_000)  # a restart reads whole batches only
        assert again.corrupt_files == 0 and again.points == buf.points
        kept = drain(again)
        assert kept == list(range(30 - len(kept), 30)), "the newest batches must be the ones kept"
        assert len(kept) * size < 64 * 1024


def test_filesystem_filled_by_someone_else_drops_only_what_cannot_fit(tmp_path):
    with small_tmpfs(tmp_path / "fs", "64k") as fs:
        buf = DiskBuffer(fs / "buf", max_bytes=100_000_000)
        for i in range(3):
            buf.push(*batch(i))
        filler = fill(fs)
        buf.push(*batch(3))  # room is made from the oldest batch
        assert buf.full_drops >= 1 and drain(DiskBuffer(fs / "buf", 100_000_000))[-1] == 3
        for i in range(4, 8):  # nothing left to remove: the new batch itself cannot be kept
            try:
                buf.push(*batch(i))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        assert leftovers(fs / "buf") == []
        filler.unlink()  # space again: the buffer works on
        buf.push(*batch(9))
        assert drain(buf)[-1] == 9


@pytest.mark.parametrize("fault", ["short", "enospc_mid", "eio_mid"])
def test_short_and_failed_writes_never_leave_a_torn_file_or_tmp(tmp_path, fault):
    state = {"armed": False, "calls": 0}

    def writer(fd, data):
        if not state["armed"]:
            return os.write(fd, data)
        state["calls"] += 1
        if fault == "short":
            return os.write(fd, data[:7])  # the kernel may write less than asked: must be continued
        if state["calls"] == 2:  # after half the batch is on disk
            state["armed"] = False
            raise OSError(errno.ENOSPC if fault == "enospc_mid" else errno.EIO, "injected")
        return os.write(fd, data[: len(data) // 2])

    buf = DiskBuffer(tmp_path, 10_000_000, write=writer)
    buf.push(*batch(0, 3))
    state["armed"] = True
    if fault == "eio_mid":
        with pytest.raises(OSError):  # not "no room": the caller drops and counts this batch
            buf.push(*batch(1, 3))
    else:
        buf.push(*batch(1, 3))
    assert leftovers(tmp_path) == []
    again = DiskBuffer(tmp_path, 10_000_000)
    assert again.corrupt_files == 0
    assert drain(again) == {"short": [0, 1], "enospc_mid": [1], "eio_mid": [0]}[fault]
    assert buf.dropped_points == (3 if fault == "enospc_mid" else 0)


def test_push_error_without_room_raises_and_leaves_no_tmp(tmp_path):
    def writer(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    buf = DiskBuffer(tmp_path, 10_000_000, write=writer)
    with pytest.raises(OSError):
        buf.push(*batch(0, 2))
    assert list(tmp_path.iterdir()) == []


def test_junk_in_the_buffer_directory_is_skipped_with_one_warning(tmp_path, caplog):
    good = DiskBuffer(tmp_path, 10_000_000)
    good.push(*batch(1, 2))
    (tmp_path / "00000000000000000005.lpb").mkdir()  # a directory named like a batch
    (tmp_path / "00000000000000000006.lpb").mkdir()
    (tmp_path / "stale.tmp").mkdir()  # a directory named like a temp file
    (tmp_path / "00000000000000000007.tmp").write_bytes(b"")  # zero-byte temp of an interrupted write
    (tmp_path / "notes.lpb").write_text("not a batch")  # a foreign name: ignored, kept
    buf = DiskBuffer(tmp_path, 10_000_000)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "00000000000000000005.lpb" in warnings[0] and "stale.tmp" in warnings[0]
    assert not (tmp_path / "00000000000000000007.tmp").exists()
    buf.push(*batch(2, 2))  # new batches sort after the junk and do not collide with it
    assert drain(buf) == [1, 2]
    assert (tmp_path / "notes.lpb").exists()


def test_unreadable_batch_file_is_skipped_not_fatal(tmp_path, caplog):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode; the directory case covers the error path")
    buf = DiskBuffer(tmp_path, 10_000_000)
    buf.push(*batch(1, 2))
    buf.push(*batch(2, 2))
    first = sorted(tmp_path.glob("*.lpb"))[0]
    first.chmod(0)
    try:
        again = DiskBuffer(tmp_path, 10_000_000)
        assert drain(again) == [2]
        assert "cannot read" in caplog.text
    finally:
        first.chmod(0o600)


def test_junk_in_the_buffer_directory_never_stops_the_agent(tmp_path):
    """The agent as a user starts it: a directory named like a batch in its buffer dir used to be
    `E! fatal`, exit 1, on every start (a restart loop under Telegraf or systemd)."""
    buf = tmp_path / "buf"
    buf.mkdir()
    (buf / "00000000000000000001.lpb").mkdir()
    (buf / "00000000000000000002.tmp").mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "targets": [],
                "host": {"model_dir": str(tmp_path)},
                "outputs": [
                    {
                        "type": "influxdb_v1",
                        "url": f"http://127.0.0.1:{free_port()}",
                        "timeout": "200ms",
                        "buffer_dir": str(buf),
                    }
                ],
            }
        )
    )
    r = subprocess.run(
        [sys.executable, "-m", "telegraf_llm_input", "--config", str(cfg), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "00000000000000000001.lpb" in line]
    assert len(warned) == 1 and warned[0].startswith("W! ") and "fatal" not in r.stderr
    assert [p.name for p in buf.glob("*.lpb") if p.is_file()], "the gather must still be buffered"


def plant_junk(directory) -> list[str]:
    """What the fault suite put in a buffer directory: a FIFO, a symlink to /dev/zero and a 10 GiB sparse
    file, each named like a batch, sorted before the real batches (so each is read first)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = ["00000000000000000000.lpb", "00000000000000000001.lpb", "00000000000000000002.lpb"]
    os.mkfifo(directory / names[0])
    os.symlink("/dev/zero", directory / names[1])
    with open(directory / names[2], "wb") as f:
        f.truncate(10 * 1024**3)
    return names


def test_fifo_device_link_and_sparse_file_are_skipped_with_one_warning(tmp_path, caplog):
    names = plant_junk(tmp_path)
    with open(tmp_path / "00000000000000000003.lpb", "wb") as f:  # one real batch after the junk
        f.write(frame(*batch(3, 2)))
    buf = DiskBuffer(tmp_path, 10_000_000)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    for name in names:
        assert name in warnings[0]
    assert "a symbolic link" in warnings[0] and "not a regular file" in warnings[0] and "over the" in warnings[0]
    assert buf.corrupt_files == 0 and buf.points == 2
    buf.push(*batch(4, 2))
    assert drain(buf) == [3, 4]
    assert all(os.path.lexists(tmp_path / name) for name in names), "junk is left alone, never deleted"


def test_a_batch_replaced_by_a_fifo_is_not_read(tmp_path):
    buf = DiskBuffer(tmp_path, 10_000_000)
    buf.push(*batch(1, 2))
    buf.push(*batch(2, 2))
    first = sorted(tmp_path.glob("*.lpb"))[0]
    first.unlink()
    os.mkfifo(first)
    assert drain(buf) == [2]


def test_junk_in_the_buffer_directory_never_freezes_the_agent(tmp_path):
    """The agent as a user runs it (`--signal none`), with the junk in its buffer directory: it gathers, and
    SIGTERM stops it with exit 0 (it froze at start: blocked on the FIFO, reading /dev/zero or 10 GiB)."""
    buf = tmp_path / "buf"
    names = plant_junk(buf)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "agent": {"interval": "200ms"},
                "targets": [],
                "outputs": [
                    {
                        "type": "influxdb_v1",
                        "url": f"http://127.0.0.1:{free_port()}",
                        "timeout": "200ms",
                        "buffer_dir": str(buf),
                    },
                    {"type": "stdout"},
                ],
            }
        )
    )
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        agent = subprocess.Popen(
            [sys.executable, "-m", "telegraf_llm_input", "--config", str(cfg), "--signal", "none"],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_until(lambda: out.read_text().count("\nllm_agent,") >= 3, 60, "three gathers", agent)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0, err.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    warned = [line for line in err.read_text().splitlines() if names[0] in line]
    assert len(warned) == 1 and warned[0].startswith("W! ") and all(n in warned[0] for n in names)
    assert len(list(buf.glob("*.lpb"))) > len(names), "the gathers must still be buffered"
