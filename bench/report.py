"""How a benchmark hands its figures to the runner: `record(...)` prints one line and, under `python -m bench`,
also appends it (as JSON) to the file the runner reads to build the docs/performance.md table."""

from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import asdict, dataclass

RESULTS_ENV = "BENCH_RESULTS"


@dataclass
class Result:
    benchmark: str
    figure: str
    """What was measured, e.g. "CPU per full gather"."""
    value: str
    """Our figure with its unit, e.g. "1.8 ms"."""
    baseline: str
    """What we compare with, named, measured in the same run."""
    baseline_value: str
    ratio: str
    """How many times better (or the agreement, for accuracy figures), e.g. "6.1x faster"."""


def record(benchmark: str, figure: str, value: str, baseline: str, baseline_value: str, ratio: str) -> Result:
    result = Result(benchmark, figure, value, baseline, baseline_value, ratio)
    print(f"{benchmark}: {figure}: {value} | baseline {baseline}: {baseline_value} | {ratio}", flush=True)
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(result)) + "\n")
    return result


def cpu_seconds(children: bool = False) -> float:
    """CPU (user + system) of this process, plus its waited-for children when asked."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    total = me.ru_utime + me.ru_stime
    if children:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += kids.ru_utime + kids.ru_stime
    return total


def best_of(fn, *, min_runs: int = 3, min_seconds: float = 0.5, clock=time.perf_counter) -> float:
    """The fastest of repeated runs of fn() (the least disturbed by other load on a shared machine)."""
    best = float("inf")
    runs = 0
    started = time.perf_counter()
    while runs < min_runs or time.perf_counter() - started < min_seconds:
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
        runs += 1
    return best


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.2f} s"
