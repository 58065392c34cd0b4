from telegraf_llm_input.schema.base import Measurement

MEASUREMENTS: tuple[Measurement, ...] = ()
"""Filled by the issue that adds this source."""
