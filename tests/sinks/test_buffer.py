from telegraf_llm_input.sinks.buffer import DiskBuffer, MemoryBuffer, frame, unframe


def test_disk_buffer_survives_restart_in_order(tmp_path):
    b = DiskBuffer(tmp_path, 10_000)
    b.push("m v=1i 1\n", 1)
    b.push("m v=2i 2\nm v=3i 3\n", 2)
    again = DiskBuffer(tmp_path, 10_000)
    assert again.points == 3
    first = again.peek()
    assert first.text == "m v=1i 1\n"
    again.pop(first)
    assert again.peek().text == "m v=2i 2\nm v=3i 3\n"
    again.push("m v=4i 4\n", 1)  # new files sort after the old ones
    assert [p.name for p in sorted(tmp_path.glob("*.lpb"))][-1] > first.key.__str__()
    assert again.points == 3


def test_torn_and_temp_files_are_skipped_not_replayed(tmp_path):
    b = DiskBuffer(tmp_path, 10_000)
    b.push("m v=1i 1\n", 1)
    b.push("m v=2i 2\n", 1)
    b.push("m v=3i 3\n", 1)
    files = sorted(tmp_path.glob("*.lpb"))
    data = files[1].read_bytes()
    files[1].write_bytes(data[:-4])  # a kill mid-write (or a torn disk)
    (tmp_path / "00000000000000000099.tmp").write_bytes(b"LPB1 1 9 0\nm v=9i")
    again = DiskBuffer(tmp_path, 10_000)
    texts = []
    while (batch := again.peek()) is not None:
        texts.append(batch.text)
        again.pop(batch)
    assert texts == ["m v=1i 1\n", "m v=3i 3\n"]
    assert again.corrupt_files == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_full_disk_buffer_drops_oldest_and_counts(tmp_path):
    one = len(frame("m v=1i 1\n", 1))
    b = DiskBuffer(tmp_path, one * 3)
    for i in range(5):
        b.push(f"m v={i}i {i}\n", 1)
    assert b.dropped_points == 2
    assert b.points == 3
    assert b.peek().text == "m v=2i 2\n"


def test_memory_buffer_bounded_drop_oldest():
    b = MemoryBuffer(20)
    for i in range(5):
        b.push(f"m v={i}i {i}\n", 1)  # 9 bytes each
    assert b.points == 2 and b.dropped_points == 3
    assert b.peek().text == "m v=3i 3\n"


def test_unframe_rejects_garbage():
    assert unframe(frame("a b=1i 1\n", 1)) == ("a b=1i 1\n", 1)
    assert unframe(b"not ours") is None
    assert unframe(frame("a b=1i 1\n", 1).replace(b"b=1", b"b=2")) is None
