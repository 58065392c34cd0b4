"""Sinks: where each gather's metrics go. Stdout (for Telegraf) unless outputs are configured.

Database clients are imported only when their output is configured, so the Telegraf (stdout)
path never loads influxdb-client: `BUILDERS` names each output's module and builder, resolved with
`importlib` when a config has that output (the same mechanism as the sources' registry).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from telegraf_llm_input.config import Config
from telegraf_llm_input.config.outputs import InfluxV1Output, InfluxV2Output, OutputConfig, PrometheusOutput
from telegraf_llm_input.sinks.base import Sink
from telegraf_llm_input.sinks.stdout import StdoutSink

SinkBuilder = Callable[[OutputConfig, str, "str | None"], Sink]
BUILDERS: dict[type, tuple[str, str]] = {
    InfluxV2Output: ("influx_v2", "build_influx_v2"),
    InfluxV1Output: ("influx", "build_influx_v1"),
    PrometheusOutput: ("prometheus", "build_prometheus"),
}
"""Output config class -> (module under `telegraf_llm_input.sinks`, its builder `(cfg, name, state_dir) -> Sink`)."""


def output_names(outputs) -> list[str]:
    """`<type>` for each output, `<type>_2`, `<type>_3`... when a type repeats (buffer dirs use these)."""
    seen: dict[str, int] = {}
    names = []
    for out in outputs:
        seen[out.type] = seen.get(out.type, 0) + 1
        names.append(out.type if seen[out.type] == 1 else f"{out.type}_{seen[out.type]}")
    return names


def build_sinks(config: Config) -> list[Sink]:
    outputs = list(config.outputs or [])
    if not outputs:
        return [StdoutSink()]
    state_dir = config.agent.state_dir
    sinks: list[Sink] = []
    for name, out in zip(output_names(outputs), outputs):
        entry = BUILDERS.get(type(out))
        if entry is None:  # stdout
            sinks.append(StdoutSink())
            continue
        module, builder = entry
        build: SinkBuilder = getattr(importlib.import_module(f"{__name__}.{module}"), builder)
        sinks.append(build(out, name, state_dir))
    return sinks
