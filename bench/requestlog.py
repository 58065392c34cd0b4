"""Request-log parse + aggregate speed vs bare `json.loads` of the same lines, one core, same run.

Lines look like a real service's log (timestamp, id, model, prompt_version, tokens, timings, status,
and a short prompt/response excerpt field), ~300 bytes. Two configs: no grouping, and group_by
[model, prompt_version]. Each run parses the lines and takes the interval's metrics (percentiles
included). The ratio is our time over bare json.loads time: the overhead of everything but JSON.
Run: python3 -m bench.requestlog
"""

from __future__ import annotations

import json
import random
import time

from telegraf_llm_input.config.requestlog import LogConfig
from telegraf_llm_input.sources.requestlog import Aggregator

LINES = 100_000


def make_lines(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ok = rng.random() > 0.02
        out.append(
            json.dumps(
                {
                    "timestamp": f"2026-11-23T22:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
                    "request_id": f"{rng.getrandbits(64):016x}",
                    "model": rng.choice(["qwen2.5-1.5b-instruct", "deepseek-r1-distill-qwen-1.5b"]),
                    "prompt_version": rng.choice(["v1", "v2", "v3"]),
                    "task": "algorithm_reasoning",
                    "prompt_tokens": rng.randint(50, 2000),
                    "completion_tokens": rng.randint(10, 1500),
                    "duration_ms": round(rng.lognormvariate(6, 0.8), 2),
                    "ttft_ms": round(rng.lognormvariate(4, 0.5), 2),
                    "status": "success" if ok else "error",
                    "prompt": "Explain the time complexity of this function and suggest a faster one.",
                }
            ).encode()
        )
    return out


def _bare(lines: list[bytes]) -> int:
    loads = json.loads
    n = 0
    for line in lines:
        loads(line)
        n += 1
    return n


def _ours(cfg: LogConfig):
    def run(lines: list[bytes]) -> int:
        agg = Aggregator(cfg)
        agg.add_lines("bench.log", lines)
        metrics = agg.take({"log": "bench"}, 10.0, 0)
        return sum(m.fields.get("requests", 0) for m in metrics)

    return run


def _best(fn, lines: list[bytes], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        n = fn(lines)
        best = min(best, time.perf_counter() - t0)
        if n != len(lines):
            raise SystemExit(f"counted {n} of {len(lines)} lines")
    return best


def main() -> None:
    lines = make_lines(LINES)
    size = sum(len(x) + 1 for x in lines) / len(lines)
    print(f"{LINES} lines, {size:.0f} bytes/line average")
    print(f"{'config':<28} {'ours lines/s':>13} {'json.loads lines/s':>19} {'time ratio':>11}")
    for label, cfg in (
        ("no group_by", LogConfig(path="bench.log")),
        ("group_by model,prompt_ver", LogConfig(path="bench.log", group_by=["model", "prompt_version"])),
    ):
        bare = _best(_bare, lines, 3)
        ours = _best(_ours(cfg), lines, 3)
        print(f"{label:<28} {LINES / ours:>13,.0f} {LINES / bare:>19,.0f} {ours / bare:>10.2f}x")
    print("baseline: bare json.loads over the same lines, same run (best of 3); target >= 100,000 lines/s")


if __name__ == "__main__":
    main()
