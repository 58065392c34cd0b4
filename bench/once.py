"""Start-up: wall time and peak RSS of `telegraf-llm-input --once` with the defaults vs a bare `python -c pass`.

The defaults: discovery on the usual local ports (nothing answers here), host, GPU auto (no NVML here), stdout.
Modules that such a gather does not use must not be imported (the HTTP client, YAML, server adapters, the probe,
the request log, influxdb-client, the Prometheus output); the list of what was loaded is checked by
tests/test_startup.py, and `python -X importtime -m telegraf_llm_input --once` shows the rest. The host source
measures its first CPU figure over 100 ms from its start (there is no earlier reference), which is inside the
wall time. Best of RUNS (the least disturbed on a shared machine).
Run: python3 -m bench.once
"""

from __future__ import annotations

import os
import sys
import time

from bench.report import fmt_ms, record

RUNS = 9


def best_run(argv: list[str]) -> tuple[float, int]:
    """(fastest wall seconds, its peak RSS in bytes) over RUNS runs of argv."""
    best = (float("inf"), 0)
    for _ in range(RUNS):
        t0 = time.perf_counter()
        pid = os.posix_spawn(
            argv[0],
            argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
        )
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(argv)} failed")
        if wall < best[0]:
            best = (wall, usage.ru_maxrss * 1024)
    return best


def main() -> None:
    once = best_run([sys.executable, "-m", "telegraf_llm_input", "--once"])
    bare = best_run([sys.executable, "-c", "pass"])
    record(
        "start-up",
        "`--once` wall time, default config",
        fmt_ms(once[0]),
        "bare `python -c pass`",
        fmt_ms(bare[0]),
        f"+{(once[0] - bare[0]) * 1e3:.0f} ms over the interpreter's own start",
    )
    record(
        "start-up",
        "`--once` peak RSS, default config",
        f"{once[1] / 2**20:.1f} MiB",
        "bare `python -c pass`",
        f"{bare[1] / 2**20:.1f} MiB",
        f"+{(once[1] - bare[1]) / 2**20:.1f} MiB",
    )


if __name__ == "__main__":
    main()
