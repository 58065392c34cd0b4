"""CPU per GPU gather (8 fake GPUs, NVML in-process) vs spawning one process per gather.

Telegraf's nvidia_smi input runs `nvidia-smi -q -x` every interval. The baseline here is only the
fork+exec of `/bin/true`: what that polling costs before nvidia-smi does any work (nvidia-smi then
initialises NVML, queries every GPU and writes XML, so the real cost is far higher).

The fake NVML measures our Python side; on a real box each NVML call adds a driver ioctl (tens of
µs) and each PCIe throughput reading waits ~20 ms in the driver (wall time, not CPU).

Run: python3 bench/gpu.py
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402  (MonkeyPatch, to install the fake NVML)

from telegraf_llm_input.config import parse_config  # noqa: E402
from telegraf_llm_input.sources import build_sources  # noqa: E402
from telegraf_llm_input.sources.base import GatherContext, SourceEnv  # noqa: E402
from tests.fakes.nvml import FakeNvml  # noqa: E402

GATHERS = 400
SPAWNS = 200


def cpu_seconds() -> float:
    """CPU of this process and its waited-for children (a spawned process's CPU counts too)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_gather(compat: bool) -> tuple[float, int]:
    mp = pytest.MonkeyPatch()
    try:
        FakeNvml().install(mp)
        config = parse_config({"targets": [], "host": {"enabled": False}, "gpu": {"nvidia_smi_compat": compat}})
        [source] = build_sources(config, SourceEnv())

        async def run() -> tuple[float, int]:
            lines = 0
            for i in range(5):  # warm up: NVML init, handles, unsupported calls learnt
                await source.gather(GatherContext(time_ns=i, deadline_s=5.0))
            start = cpu_seconds()
            for i in range(GATHERS):
                lines = len(await source.gather(GatherContext(time_ns=i, deadline_s=5.0)))
            used = cpu_seconds() - start
            await source.close()
            return used / GATHERS, lines

        return asyncio.run(run())
    finally:
        mp.undo()


def bench_spawn() -> float:
    true = "/bin/true" if Path("/bin/true").exists() else "true"
    subprocess.run([true], check=True)
    start = cpu_seconds()
    for _ in range(SPAWNS):
        subprocess.run([true], check=True)
    return (cpu_seconds() - start) / SPAWNS


def main() -> None:
    t0 = time.monotonic()
    per_gather, lines = bench_gather(compat=False)
    per_gather_compat, lines_compat = bench_gather(compat=True)
    per_spawn = bench_spawn()
    print(f"GPU gather, 8 fake GPUs ({lines} metrics):            {per_gather * 1e3:8.3f} ms CPU per gather")
    print(
        f"GPU gather + nvidia_smi compat ({lines_compat} metrics):    {per_gather_compat * 1e3:8.3f} ms CPU per gather"
    )
    print(
        f"baseline: spawn /bin/true once (nvidia-smi polling, before any work): "
        f"{per_spawn * 1e3:8.3f} ms CPU per gather"
    )
    print(f"ratio spawn / gather: {per_spawn / per_gather:.1f}x  (with compat: {per_spawn / per_gather_compat:.1f}x)")
    print(f"({GATHERS} gathers, {SPAWNS} spawns, {time.monotonic() - t0:.1f} s)")


if __name__ == "__main__":
    main()
