"""Sinks: where each gather's metrics go. Stdout (for Telegraf) unless outputs are configured."""

from __future__ import annotations

from telegraf_llm_input.sinks.base import Sink
from telegraf_llm_input.sinks.stdout import StdoutSink


def build_sinks(config) -> list[Sink]:
    return [StdoutSink()]
