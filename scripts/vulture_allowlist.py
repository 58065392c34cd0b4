"""Names vulture (the dead-code check in scripts/check) cannot see used: read as code, never run.

Entry points named by strings and resolved with importlib, and names used only inside string annotations.
"""
# ruff: noqa

from telegraf_llm_input.config import loader
from telegraf_llm_input.sinks import influx, influx_v2, prometheus

# sinks.BUILDERS: (module, builder name), imported when a config has that output
influx.build_influx_v1
influx_v2.build_influx_v2
prometheus.build_prometheus

# the bound of load_section's TypeVar, a string (typeshed only)
loader.DataclassInstance

# http.server hooks, called by the standard library (bench and test fakes)
_.do_GET
_.do_POST
_.log_message
_.protocol_version
_.disable_nagle_algorithm
_.daemon_threads
_.request_queue_size
_.allow_reuse_address

# asyncio.Protocol and httptools parser callbacks, called by the event loop and llhttp (proxy/)
_.connection_made
_.data_received
_.eof_received
_.connection_lost
_.pause_writing
_.resume_writing
_.on_message_begin
_.on_url
_.on_status
_.on_header
_.on_headers_complete
_.on_body
_.on_message_complete

# Data a parser keeps from a server's answer for its readers, read by none yet
_.total_ns  # apis.base.Stats: Ollama's total_duration
