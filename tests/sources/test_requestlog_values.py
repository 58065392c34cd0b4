"""Request-log values a broken logger writes: each such line is malformed (counted), never part of a
percentile or a sum. Real files through the public path (config -> sources -> Agent)."""

from __future__ import annotations

import json

from tests.sources.test_requestlog import Run, malformed, only

GOOD = [
    {"duration_ms": 100.0 + i, "ttft_ms": 10 + i, "prompt_tokens": 50 + i, "completion_tokens": 7, "status": "success"}
    for i in range(5)
]
BAD = [
    {"duration_ms": -5000, "prompt_tokens": 10},
    {"duration_ms": 100, "prompt_tokens": -99890},
    {"duration_ms": 100, "completion_tokens": 2**70},
    {"duration_ms": "NaN"},
    {"duration_ms": "-Infinity"},
    {"duration_ms": 100, "ttft_ms": -1},
    {"duration_ms": 100, "prompt_tokens": 12.5},
    {"duration_ms": 100, "completion_tokens": True},
    {"duration_ms": 100, "prompt_tokens": "lots"},
]


def test_impossible_values_make_the_line_malformed(tmp_path):
    log = tmp_path / "req.log"
    with open(log, "w") as f:
        for good, bad in zip(GOOD, BAD):
            f.write(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        for bad in BAD[len(GOOD) :]:
            f.write(json.dumps(bad) + "\n")
        f.write('{"duration_ms": 1e400, "status": "success"}\n')  # JSON for +inf
        f.write('{"duration_ms": NaN, "status": "success"}\n')  # Python's json accepts it
    run = Run(tmp_path, {"path": str(log), "from": "beginning"})
    got = run.gather()
    fields = only(got)
    assert malformed(got) == len(BAD) + 2
    assert fields["requests"] == len(GOOD)
    assert fields["prompt_tokens"] == sum(g["prompt_tokens"] for g in GOOD)
    assert fields["completion_tokens"] == 7 * len(GOOD)
    assert type(fields["prompt_tokens"]) is int and type(fields["completion_tokens"]) is int
    assert fields["latency_p50_ms"] == 102.0 and fields["latency_mean_ms"] == 102.0
    assert 10 <= fields["ttft_p95_ms"] <= 14
    run.close()


def test_numeric_strings_and_whole_floats_still_count(tmp_path):
    log = tmp_path / "req.log"
    log.write_text(
        json.dumps({"duration_ms": "250.5", "prompt_tokens": 12.0, "completion_tokens": "3", "status": "ok"})
        + "\n"
        + json.dumps({"status": "ok", "duration_ms": None})
        + "\n"
    )
    run = Run(tmp_path, {"path": str(log), "from": "beginning"})
    got = run.gather()
    fields = only(got)
    assert malformed(got) == 0 and fields["requests"] == 2
    assert fields["latency_p50_ms"] == 250.5 and fields["prompt_tokens"] == 12 and fields["completion_tokens"] == 3
    run.close()
