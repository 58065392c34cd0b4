"""Generated documentation: the metrics table, the config reference, the sample config (and the dashboards).

`python -m telegraf_llm_input.docs` rewrites every generated file; `--check` only lists the stale ones
(exit 1), which is what the tests run.
"""
