"""`telegraf-llm-input doctor`: one screen, plain words: which model servers answer, which GPU backend is used
and why, what this user can see of the servers (process, sockets, per-process GPU memory, journal, request logs),
whether the outputs answer, whether a Telegraf drop-in runs this binary; the fix under every "no". Exit 1 when
something configured cannot work.

It reads, it does not change anything: no probe request, no point written (the InfluxDB check is an empty
write), no log position saved.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from telegraf_llm_input import __version__
from telegraf_llm_input.config import Config
from telegraf_llm_input.doctor import gpu, outputs, servers, sight
from telegraf_llm_input.doctor.report import Check, failed, render
from telegraf_llm_input.http import HttpPool
from telegraf_llm_input.sources.base import SourceEnv


async def checks(config: Config, telegraf_places: Sequence[str] = outputs.TELEGRAF_PLACES) -> list[Check]:
    env = SourceEnv()
    pool = HttpPool().retain()
    try:
        found, said = await servers.find(config, pool)
        gpu_said, gpu_used = await gpu.check(config, env)
        seen = await sight.processes(found, env, gpu_used, config)
    finally:
        await pool.release()
        if env.nvml is not None:
            env.nvml.shutdown()
    seen += sight.server_logs(found) + sight.journal(config) + sight.request_logs(config)
    return said + gpu_said + seen + await outputs.check(config) + outputs.telegraf(telegraf_places)


async def run(config: Config, config_path: str | None, telegraf_places: Sequence[str] = outputs.TELEGRAF_PLACES) -> int:
    found = await checks(config, telegraf_places)
    header = (
        f"telegraf-llm-input {__version__} doctor: config {config_path or '(none: the defaults)'}\nas {sight.who()}"
    )
    sys.stdout.write(render(header, found))
    sys.stdout.flush()
    return 1 if failed(found) else 0
