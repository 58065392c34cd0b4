"""Sinks: where each gather's metrics go. Stdout (for Telegraf) unless outputs are configured.

Database clients are imported only when their output is configured, so the Telegraf (stdout)
path never loads influxdb-client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telegraf_llm_input.sinks.base import Sink
from telegraf_llm_input.sinks.config import InfluxV1Output, InfluxV2Output, PrometheusOutput, StdoutOutput
from telegraf_llm_input.sinks.stdout import StdoutSink

if TYPE_CHECKING:  # config.py imports the output sections from sinks/: a type-only import, no cycle
    from telegraf_llm_input.config import Config


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
        if isinstance(out, StdoutOutput):
            sinks.append(StdoutSink())
        elif isinstance(out, InfluxV2Output):
            from telegraf_llm_input.sinks.influx import build_influx_v2
            sinks.append(build_influx_v2(out, name, state_dir))
        elif isinstance(out, InfluxV1Output):
            from telegraf_llm_input.sinks.influx import build_influx_v1
            sinks.append(build_influx_v1(out, name, state_dir))
        elif isinstance(out, PrometheusOutput):
            from telegraf_llm_input.sinks.prometheus import PrometheusSink
            sinks.append(PrometheusSink(name, out.listen, out.path, out.expire))
    return sinks
