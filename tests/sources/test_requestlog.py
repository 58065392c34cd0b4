"""The request-log source on real files the test writes while the agent runs.

Every case goes through the public path: config dict -> build_sources -> Agent.gather_once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.config.loader import ConfigError
from telegraf_llm_input.lineprotocol import encode_batch
from telegraf_llm_input.schema import lookup
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv

PERCENTILE_FIELDS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms", "ttft_p95_ms")


class Run:
    """An agent with only the request-log source, driven gather by gather."""

    def __init__(self, tmp: Path, entry: dict, state: bool = True):
        config = parse_config({"host": {"enabled": False}, "gpu": {"enabled": False}, "targets": [], "logs": [entry]})
        self.sources = build_sources(config, SourceEnv(state_dir=tmp / "state" if state else None))
        assert [s.name for s in self.sources] == [f"logs:{entry.get('name') or entry['path']}"]
        self.agent = Agent(self.sources, [], deadline_s=30)
        self.all: list = []

    def gather(self) -> list:
        metrics = asyncio.run(self.agent.gather_once())
        self.all.extend(metrics)
        return [m for m in metrics if m.measurement == "llm_requests"]

    def close(self) -> None:
        for s in self.sources:
            asyncio.run(s.close())


def rows(metrics: list, *group: str) -> dict[tuple, dict]:
    """Rows with requests by their group tag values."""
    return {tuple(m.tags.get(k) for k in group): dict(m.fields) for m in metrics if "requests" in m.fields}


def only(metrics: list) -> dict:
    found = [m for m in metrics if "requests" in m.fields]
    assert len(found) == 1, found
    return dict(found[0].fields)


def malformed(metrics: list) -> int:
    return sum(m.fields.get("malformed_lines", 0) for m in metrics)


def record(i: int, **extra) -> dict:
    rec = {
        "timestamp": f"2026-01-01T00:00:{i % 60:02d}Z",
        "request_id": f"req-{i}",
        "prompt_tokens": 100 + i % 7,
        "completion_tokens": 200 + i % 11,
        "duration_ms": 50.0 + (i * 37) % 1000 + (i % 3) * 0.25,
        "ttft_ms": 5 + i % 13,
        "status": "success" if i % 10 else "error",
    }
    rec.update(extra)
    return rec


def append(path: Path, recs: list[dict]) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in recs))


def check_against(fields: dict, recs: list[dict], rated: bool | None = None) -> None:
    """Every aggregate equals what numpy computes from the records the test wrote; `rated` (None: either way):
    whether the interval has `*_per_s`."""
    lat = np.array([r["duration_ms"] for r in recs])
    assert fields["requests"] == len(recs)
    errors = sum(r["status"] != "success" for r in recs)
    assert fields["errors"] == errors
    assert fields["error_ratio"] == pytest.approx(errors / len(recs))
    assert fields["prompt_tokens"] == sum(r["prompt_tokens"] for r in recs)
    assert fields["completion_tokens"] == sum(r["completion_tokens"] for r in recs)
    for q in (50, 95, 99):
        assert fields[f"latency_p{q}_ms"] == pytest.approx(np.percentile(lat, q), rel=1e-12)
    assert fields["latency_mean_ms"] == pytest.approx(lat.mean(), rel=1e-12)
    assert fields["ttft_p95_ms"] == pytest.approx(np.percentile([r["ttft_ms"] for r in recs], 95), rel=1e-12)
    if rated is None:
        rated = "requests_per_s" in fields
    if rated:  # an interval that began with backlog (the first gather) has no rates: old lines are not its traffic
        assert fields["requests_per_s"] > 0
        assert fields["completion_tokens_per_s"] / fields["requests_per_s"] == pytest.approx(
            fields["completion_tokens"] / fields["requests"]
        )
    else:
        assert "requests_per_s" not in fields and "completion_tokens_per_s" not in fields


@pytest.fixture
def logged():
    """Every record our loggers emit, at any level (propagation may be off after setup_logging)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            records.append(rec)

    logger = logging.getLogger("telegraf_llm_input")
    handler = Keep(level=logging.DEBUG)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_steady_writes_percentiles_match_numpy(tmp_path):
    log = tmp_path / "req.log"
    append(log, [record(i) for i in range(5)])  # there before start: skipped (from: end)
    run = Run(tmp_path, {"path": str(log)})
    first = only(run.gather())
    assert first["requests"] == 0 and "requests_per_s" not in first  # no interval read from its start yet
    for round_ in range(3):
        recs = [record(1000 * round_ + i) for i in range(200 + 50 * round_)]
        append(log, recs)
        check_against(only(run.gather()), recs, rated=True)
    # Quiet interval: requests=0, rates 0, no percentiles.
    quiet = only(run.gather())
    assert quiet["requests"] == 0 and quiet["requests_per_s"] == 0 and quiet["errors"] == 0
    assert not set(PERCENTILE_FIELDS) & set(quiet) and "error_ratio" not in quiet
    for m in run.all:
        if m.measurement == "llm_requests":
            for name in m.fields:
                assert lookup("llm_requests", name) is not None, name
            assert m.tags["log"] == str(log)
    run.close()


def test_burst_of_100k_lines_over_several_gathers(tmp_path):
    log = tmp_path / "req.log"
    run = Run(tmp_path, {"path": str(log), "from": "beginning", "max_read_per_gather": "4MiB"})
    recs = [record(i) for i in range(100_000)]
    append(log, recs)
    seen = []
    for _ in range(20):
        fields = only(run.gather())
        seen.append(fields["requests"])
        if sum(seen) >= len(recs):
            break
    assert sum(seen) == len(recs)
    assert len([n for n in seen if n]) >= 2, seen  # 4 MiB per gather: the backlog took several
    assert only(run.gather())["requests"] == 0
    run.close()


def test_burst_in_one_interval_is_exact(tmp_path):
    log = tmp_path / "req.log"
    run = Run(tmp_path, {"path": str(log), "from": "beginning", "max_read_per_gather": "64MiB"})
    recs = [record(i) for i in range(100_000)]
    append(log, recs)
    check_against(only(run.gather()), recs, rated=False)
    run.close()


def test_rotation_by_rename_drains_the_old_file(tmp_path):
    log = tmp_path / "req.log"
    run = Run(tmp_path, {"path": str(log), "from": "beginning"})
    a = [record(i) for i in range(30)]
    append(log, a)
    check_against(only(run.gather()), a)
    # The writer still writes to the old file after the rename, then opens a new one.
    b = [record(100 + i) for i in range(20)]
    with open(log, "a") as old:
        old.write(json.dumps(b[0]) + "\n")
        os.rename(log, tmp_path / "req.log.1")
        old.write("".join(json.dumps(r) + "\n" for r in b[1:]))
    check_against(only(run.gather()), b)
    # Nothing at the path yet: the renamed file is still followed, the writer is still on it.
    b2 = [record(150 + i) for i in range(4)]
    append(tmp_path / "req.log.1", b2)
    c = [record(200 + i) for i in range(25)]
    append(log, c)
    check_against(only(run.gather()), b2 + c)
    d = [record(300 + i) for i in range(5)]
    append(log, d)
    check_against(only(run.gather()), d)
    run.close()


def test_rotation_with_a_glob_that_matches_rotated_files_counts_once(tmp_path):
    log = tmp_path / "req.log"
    run = Run(tmp_path, {"path": str(tmp_path / "req.log*"), "from": "beginning", "name": "api"})
    a = [record(i) for i in range(10)]
    append(log, a)
    check_against(only(run.gather()), a)
    os.rename(log, tmp_path / "req.log.1")
    b = [record(50 + i) for i in range(7)]
    append(log, b)
    check_against(only(run.gather()), b)
    assert only(run.gather())["requests"] == 0
    run.close()


def test_copytruncate(tmp_path):
    log = tmp_path / "req.log"
    run = Run(tmp_path, {"path": str(log), "from": "beginning"})
    a = [record(i) for i in range(40)]
    append(log, a)
    check_against(only(run.gather()), a)
    shutil.copy(log, tmp_path / "req.log.1")
    os.truncate(log, 0)
    b = [record(100 + i) for i in range(5)]  # fewer bytes than before: size < position
    append(log, b)
    check_against(only(run.gather()), b)
    shutil.copy(log, tmp_path / "req.log.1")
    os.truncate(log, 0)
    c = [record(300 + i) for i in range(60)]  # more bytes than before: caught by the fingerprint
    append(log, c)
    check_against(only(run.gather()), c)
    run.close()


def test_deletion_and_recreation_and_missing_at_start(tmp_path, logged):
    log = tmp_path / "req.log"
    run = Run(tmp_path, {"path": str(log)})  # from: end, but the file does not exist yet
    assert only(run.gather())["requests"] == 0
    a = [record(i) for i in range(12)]
    append(log, a)  # created after start: read from its start
    check_against(only(run.gather()), a)
    b = [record(40 + i) for i in range(3)]
    append(log, b)
    log.unlink()  # lines written just before the deletion are still read from the open file
    check_against(only(run.gather()), b)
    assert only(run.gather())["requests"] == 0
    c = [record(80 + i) for i in range(9)]
    append(log, c)
    check_against(only(run.gather()), c)
    assert not [r for r in logged if r.levelno >= logging.WARNING]
    run.close()


def test_partial_line_waits_for_its_newline(tmp_path):
    log = tmp_path / "req.log"
    run = Run(tmp_path, {"path": str(log), "from": "beginning"})
    recs = [record(i) for i in range(3)]
    text = json.dumps(recs[2]) + "\n"
    with open(log, "a") as f:
        f.write(json.dumps(recs[0]) + "\n" + json.dumps(recs[1]) + "\n" + text[:17])
    got = run.gather()
    check_against(only(got), recs[:2])
    assert malformed(got) == 0
    got = run.gather()
    assert only(got)["requests"] == 0 and malformed(got) == 0
    with open(log, "a") as f:
        f.write(text[17:])
    check_against(only(run.gather()), recs[2:])
    run.close()


def test_malformed_lines_counted_skipped_one_warning_per_interval(tmp_path, logged):
    log = tmp_path / "req.log"
    run = Run(tmp_path, {"path": str(log), "from": "beginning"})
    good = [record(i) for i in range(10)]
    with open(log, "w") as f:
        for i, r in enumerate(good):
            f.write(json.dumps(r) + "\n")
            if i % 3 == 0:
                f.write('{"duration_ms": 12, "status": \n')
        f.write("[1, 2]\n42\nnot json at all\n\n" + "[" * 200_000 + "\n")
    with open(log, "ab") as f:
        f.write(b"\xff\xfe{}\n")
    got = run.gather()
    check_against(only(got), good)
    assert malformed(got) == 4 + 3 + 1 + 1
    warnings = [r.getMessage() for r in logged if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "9 malformed" in warnings[0] and str(log) in warnings[0]
    assert malformed(run.gather()) == 0
    assert len([r for r in logged if r.levelno == logging.WARNING]) == 1
    run.close()


def test_megabyte_prompt_is_never_emitted_or_logged(tmp_path, logged):
    log = tmp_path / "req.log"
    run = Run(
        tmp_path,
        {"path": str(log), "from": "beginning", "max_read_per_gather": "256KiB", "group_by": ["prompt_version"]},
    )
    secret = "TOP-SECRET-PROMPT-" + "x" * (1024 * 1024)
    recs = [record(i, prompt=secret, response="SECRET-RESPONSE " * 100, prompt_version="v1") for i in range(3)]
    append(log, recs)
    with open(log, "a") as f:  # a truncated (malformed) line carrying the prompt too
        f.write(json.dumps(record(9, prompt=secret))[:500_000] + "\n")
    got: list = []
    for _ in range(10):
        got += run.gather()
    assert sum(m.fields.get("requests", 0) for m in got) == 3
    assert malformed(got) == 1
    text = encode_batch(run.all).text + "".join(r.getMessage() for r in logged)
    text += "".join((tmp_path / "state" / "logs").iterdir().__next__().read_text())
    assert "TOP-SECRET" not in text and "SECRET-RESPONSE" not in text and "xxxxxxxx" not in text
    run.close()


def test_restart_with_state_file_neither_rereads_nor_skips(tmp_path):
    log = tmp_path / "req.log"
    entry = {"path": str(log), "from": "beginning", "name": "api"}
    recs = [record(i) for i in range(100)]
    run = Run(tmp_path, entry)
    append(log, recs[:40])
    counted = only(run.gather())["requests"]
    partial = json.dumps(recs[60]) + "\n"
    append(log, recs[40:60])
    with open(log, "a") as f:
        f.write(partial[:30])
    counted += only(run.gather())["requests"]
    run.close()
    assert counted == 60
    # While the agent is down: the partial line is completed and more arrive.
    with open(log, "a") as f:
        f.write(partial[30:])
    append(log, recs[61:])
    run2 = Run(tmp_path, entry)
    fields = only(run2.gather())
    check_against(fields, recs[60:])
    run2.close()
    # Without state the same config starts over (from: beginning) and counts everything again.
    run3 = Run(tmp_path / "other", entry, state=False)
    assert only(run3.gather())["requests"] == 100
    run3.close()


def test_rotation_while_the_agent_is_down(tmp_path):
    log = tmp_path / "req.log"
    entry = {"path": str(log), "name": "api"}  # from: end
    run = Run(tmp_path, entry)
    assert only(run.gather())["requests"] == 0
    a = [record(i) for i in range(30)]
    append(log, a)
    check_against(only(run.gather()), a)
    run.close()
    b = [record(100 + i) for i in range(10)]
    append(log, b)  # the unread rest of the file that then gets rotated away
    os.rename(log, tmp_path / "req.log-20261123")
    c = [record(200 + i) for i in range(15)]
    append(log, c)  # a file new since the last run: read whole despite from: end
    run2 = Run(tmp_path, entry)
    check_against(only(run2.gather()), b + c)
    d = [record(300 + i) for i in range(3)]
    append(log, d)
    append(tmp_path / "req.log-20261123", [record(999)])  # no longer followed once drained
    check_against(only(run2.gather()), d)
    run2.close()


def test_restart_ignores_a_state_file_for_another_file_on_a_reused_inode(tmp_path):
    log = tmp_path / "req.log"
    entry = {"path": str(log), "from": "beginning"}
    run = Run(tmp_path, entry)
    append(log, [record(i) for i in range(50)])
    assert only(run.gather())["requests"] == 50
    run.close()
    # Same inode, different content (rewritten in place while the agent was down).
    with open(log, "r+") as f:
        f.truncate(0)
    new = [record(1000 + i, request_id=f"new-{i}") for i in range(80)]
    append(log, new)
    run2 = Run(tmp_path, entry)
    check_against(only(run2.gather()), new)
    run2.close()


def test_group_cap_folds_the_rest_into_other(tmp_path):
    log = tmp_path / "req.log"
    run = Run(
        tmp_path,
        {
            "path": str(log),
            "from": "beginning",
            "group_by": ["prompt_version", "model"],
            "max_groups": 3,
            "tags": {"team": "a"},
        },
    )
    recs = [record(i, prompt_version=f"v{i % 10}", model="m") for i in range(100)]
    append(log, recs)
    got = run.gather()
    by = rows(got, "prompt_version", "model")
    assert set(by) == {("v0", "m"), ("v1", "m"), ("v2", "m"), ("other", "m")}
    assert by[("other", "m")]["requests"] == 70 and by[("other", "m")]["grouped_as_other"] == 70
    for v in ("v0", "v1", "v2"):
        check_against(by[(v, "m")], [r for r in recs if r["prompt_version"] == v])
        assert "grouped_as_other" not in by[(v, "m")]
    assert all(m.tags["team"] == "a" and m.tags["log"] == str(log) for m in got)
    assert sum(f["requests"] for f in by.values()) == 100
    # Next interval, only v1 traffic: every known group still gets a row, zeros without percentiles.
    append(log, [record(7, prompt_version="v1", model="m")])
    by = rows(run.gather(), "prompt_version", "model")
    assert by[("v1", "m")]["requests"] == 1
    assert by[("v0", "m")]["requests"] == 0 and "latency_p50_ms" not in by[("v0", "m")]
    run.close()


def test_ab_comparison_with_mapping_dotted_paths_and_http_errors(tmp_path):
    log = tmp_path / "req.log"
    run = Run(
        tmp_path,
        {
            "path": str(log),
            "from": "beginning",
            "group_by": ["prompt_version"],
            "fields": {
                "latency_ms": "timing.total_ms",
                "prompt_tokens": "usage.prompt_tokens",
                "completion_tokens": "usage.completion_tokens",
                "ttft_ms": "timing.ttft_ms",
            },
            "error_when": {"http_status_gte": 500, "http_status_field": "http.code"},
        },
    )
    recs = []
    for i in range(400):
        a = i % 2 == 0
        recs.append(
            {
                "prompt_version": "A" if a else "B",
                "http": {"code": 500 if i % (20 if a else 80) == 0 else 200},
                "timing": {"total_ms": (300 if a else 200) + i % 50, "ttft_ms": 10 + i % 5},
                "usage": {"prompt_tokens": 10, "completion_tokens": 20 + i % 3},
            }
        )
    append(log, recs)
    by = rows(run.gather(), "prompt_version")
    for v in ("A", "B"):
        mine = [r for r in recs if r["prompt_version"] == v]
        f = by[(v,)]
        assert f["requests"] == 200
        assert f["errors"] == sum(r["http"]["code"] >= 500 for r in mine)
        assert f["latency_p95_ms"] == pytest.approx(np.percentile([r["timing"]["total_ms"] for r in mine], 95))
        assert f["completion_tokens"] == sum(r["usage"]["completion_tokens"] for r in mine)
    assert by[("A",)]["error_ratio"] > by[("B",)]["error_ratio"]
    run.close()


def test_bad_config_is_one_clear_error():
    with pytest.raises(ConfigError, match="fields"):
        parse_config({"logs": [{"path": "/x", "fields": {"latency": "d"}}]})
    with pytest.raises(ConfigError, match="group_by"):
        parse_config({"logs": [{"path": "/x", "group_by": ["log"]}]})
    with pytest.raises(ConfigError, match="from"):
        parse_config({"logs": [{"path": "/x", "from": "middle"}]})
    with pytest.raises(ConfigError, match="max_groups"):
        parse_config({"logs": [{"path": "/x", "max_groups": 0}]})


def test_cli_once_prints_llm_requests(tmp_path):
    log = tmp_path / "req.log"
    recs = [record(i) for i in range(25)]
    append(log, recs)
    config = tmp_path / "c.yaml"
    config.write_text(
        "agent:\n  state_dir: " + str(tmp_path / "state") + "\n"
        "host:\n  enabled: false\ngpu:\n  enabled: false\ntargets: []\n"
        f"logs:\n  - path: {log}\n    from: beginning\n    name: api\n    group_by: [status]\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "telegraf_llm_input", "--config", str(config), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = [x for x in out.stdout.splitlines() if x.startswith("llm_requests,")]
    success = [x for x in lines if "status=success" in x]
    error = [x for x in lines if "status=error" in x]
    assert len(success) == 1 and "requests=22i" in success[0] and "errors=0i" in success[0]
    assert len(error) == 1 and "errors=3i" in error[0]
    assert list((tmp_path / "state" / "logs").iterdir())


def test_sample_config_logs_example_parses():
    import re

    text = (Path(__file__).resolve().parents[2] / "telegraf_llm_input" / "sample-config.yaml").read_text()
    block = re.search(r"# --- logs example ---\n(.*?)# --- end logs example ---", text, re.S).group(1)
    import yaml

    data = yaml.safe_load("\n".join(line[2:] for line in block.splitlines()))
    entry = parse_config(data).logs[0]
    assert entry.group_by == ["prompt_version", "model"] and entry.fields["ttft_ms"] == "timing.ttft_ms"


def test_corrupt_state_file_is_one_warning_then_fresh(tmp_path, logged):
    log = tmp_path / "req.log"
    entry = {"path": str(log), "from": "beginning", "name": "api"}
    run = Run(tmp_path, entry)
    append(log, [record(i) for i in range(5)])
    assert only(run.gather())["requests"] == 5
    run.close()
    for f in (tmp_path / "state" / "logs").iterdir():
        f.write_text("garbage")
    run2 = Run(tmp_path, entry)
    assert only(run2.gather())["requests"] == 5
    assert only(run2.gather())["requests"] == 0
    warnings = [r.getMessage() for r in logged if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "state file" in warnings[0]
    run2.close()


def test_backlog_is_worked_off_within_the_deadline_losing_nothing(tmp_path):
    log = tmp_path / "req.log"
    run = Run(tmp_path, {"path": str(log), "from": "beginning", "max_read_per_gather": "64MiB"})
    recs = [record(i) for i in range(60_000)]
    append(log, recs)
    run.agent.deadline_s = 0.2  # parsing 60k lines takes longer (~0.4 s): the source reads what fits in half of it

    async def gathers() -> list[int]:
        counts = []
        for _ in range(200):
            metrics = await run.agent.gather_once()
            counts.append(sum(m.fields.get("requests", 0) for m in metrics if m.measurement == "llm_requests"))
            if sum(counts) >= len(recs):
                break
        return counts

    counts = asyncio.run(gathers())
    assert sum(counts) == len(recs)
    assert len([c for c in counts if c]) >= 2, counts
    assert run.agent.stats[run.sources[0].name].errors == 0  # never ran past the deadline
    run.close()


def test_glob_follows_several_files_and_new_ones(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    append(d / "a.jsonl", [record(i) for i in range(5)])  # there at start: from: end skips it
    run = Run(tmp_path, {"path": str(d / "*.jsonl"), "name": "workers"})
    assert only(run.gather())["requests"] == 0
    a = [record(10 + i) for i in range(7)]
    b = [record(50 + i) for i in range(4)]
    append(d / "a.jsonl", a)
    append(d / "b.jsonl", b)  # created while running: read whole
    append(d / "ignored.txt", [record(99)])
    check_against(only(run.gather()), a + b)
    run.close()


def test_group_values_of_any_json_type_and_missing_keys(tmp_path):
    log = tmp_path / "req.log"
    run = Run(tmp_path, {"path": str(log), "from": "beginning", "group_by": ["shard", "meta.variant"]})
    recs = [
        record(0, shard=1, meta={"variant": "a"}),
        record(1, shard=1, meta={"variant": "a"}),
        record(2, shard=True, meta={"variant": ["x"]}),
        record(3, shard={"k": 1}),
        record(4),
    ]
    append(log, recs)
    by = rows(run.gather(), "shard", "meta.variant")
    assert {k: v["requests"] for k, v in by.items()} == {
        ("1", "a"): 2,
        ("True", '["x"]'): 1,
        ('{"k": 1}', "none"): 1,
        ("none", "none"): 1,
    }
    run.close()


def test_unopenable_path_and_unwritable_state_dir_warn_once_and_keep_going(tmp_path, logged):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    (tmp_path / "req.log").mkdir()  # the path exists but is no readable file
    run = Run(tmp_path, {"path": str(tmp_path / "req.log"), "from": "beginning"})
    for _ in range(3):
        assert only(run.gather())["requests"] == 0
    (tmp_path / "req.log").rmdir()
    recs = [record(i) for i in range(4)]
    append(tmp_path / "req.log", recs)
    check_against(only(run.gather()), recs)
    warnings = [r.getMessage() for r in logged if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "cannot open" in w]) == 1, warnings
    assert len([w for w in warnings if "cannot write state file" in w]) == 1, warnings
    assert any("readable again" in r.getMessage() for r in logged if r.levelno == logging.INFO)
    run.close()


def test_a_backlog_is_counted_but_not_divided_by_the_time_since_start(tmp_path):
    """1,000 requests already in the file at start (`from: beginning`), read over two gathers (the byte budget):
    counted once, but no requests_per_s until an interval began with everything read; then the rate is the new
    lines over that interval only."""
    from telegraf_llm_input.config.requestlog import LogConfig
    from telegraf_llm_input.sources.base import GatherContext
    from telegraf_llm_input.sources.requestlog import RequestLogSource

    log = tmp_path / "req.log"
    old = [record(i) for i in range(1000)]
    append(log, old)
    now = [0.0]
    size = log.stat().st_size
    cfg = LogConfig(path=str(log), start_from="beginning", max_read_per_gather=size // 2 + 1000)
    source = RequestLogSource(cfg, clock=lambda: now[0])

    def gather(t: float) -> dict:
        now[0] = t
        return only(asyncio.run(source.gather(GatherContext(int(t * 1e9), 30.0))))

    first, second = gather(0.86), gather(10.0)  # the backlog, in two budgets' worth
    assert first["requests"] + second["requests"] == 1000
    assert "requests_per_s" not in first and "requests_per_s" not in second
    new = [record(5000 + i) for i in range(30)]
    append(log, new)
    third = gather(20.0)
    assert third["requests"] == 30 and third["requests_per_s"] == pytest.approx(30 / 10.0)
    asyncio.run(source.close())


def test_a_line_over_64_mib_is_skipped_in_one_gather(tmp_path):
    """A 70 MiB line (sparse, so the test writes little) between good ones: skipped and counted as one bad line
    in the same gather that reads the lines after it, not one 256 KiB chunk per gather."""
    log = tmp_path / "req.log"
    with open(log, "wb") as f:
        f.write((json.dumps(record(1)) + "\n").encode())
        f.write(b"{")
        f.seek(70 * 1024 * 1024, os.SEEK_CUR)
        f.write(b"}\n" + "".join(json.dumps(record(i)) + "\n" for i in range(2, 5)).encode())
    run = Run(tmp_path, {"path": str(log), "from": "beginning"})
    first = run.gather()
    assert only(first)["requests"] == 4
    assert malformed(first) == 1
    run.close()
