"""`telegraf-llm-input proxy`: a measuring pass-through proxy in front of one model server.

Every request passes through unchanged (llhttp parses both sides, bodies streamed as they arrive); requests to a
model API are measured on the way (TTFT, time to first answer, ITL/TPOT, e2e, tokens, errors) and the
totals are served as a Prometheus page on the proxy's own port under `/proxy/metrics`, which the agent
reads like any server (`servers/proxy.py`). It runs as its own service, apart from the agent: user traffic
must not drop when Telegraf restarts its plugins.
"""
