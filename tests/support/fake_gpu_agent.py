"""The real agent CLI on a machine with two fake H100s (tests/fakes/nvml.py), for end-to-end runs without a GPU.

    python -m tests.support.fake_gpu_agent --config agent.yaml --signal none

NVML's functions are replaced before the agent starts; the energy counter grows with wall time at the GPUs'
power draw, as a working GPU's does. GPU 0 holds 8 GiB for the parent process (the test, whose
fake servers the agent finds by their ports). Everything else is the unmodified agent.
"""

from __future__ import annotations

import os
import sys
import time

import pynvml

from telegraf_llm_input.cli import main
from tests.fakes.nvml import FakeNvml, h100


class _Patch:
    """The one method of pytest's monkeypatch that FakeNvml.install uses."""

    @staticmethod
    def setattr(target, name, value) -> None:
        setattr(target, name, value)


def install() -> FakeNvml:
    gpu0 = h100(0)
    gpu0.processes = [(os.getppid(), 8 << 30)]  # the test process: it runs the fake servers the agent watches
    fake = FakeNvml([gpu0, h100(1)]).install(_Patch())
    read_energy = pynvml.nvmlDeviceGetTotalEnergyConsumption
    last = [time.monotonic()]

    def energy(handle):
        now = time.monotonic()
        fake.advance(now - last[0])
        last[0] = now
        return read_energy(handle)

    pynvml.nvmlDeviceGetTotalEnergyConsumption = energy
    return fake


if __name__ == "__main__":
    install()
    sys.exit(main(sys.argv[1:]))
