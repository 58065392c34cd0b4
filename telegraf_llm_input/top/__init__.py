"""`telegraf-llm-input top`: the agent's own gathers, drawn as one terminal screen.

Only the `top` command imports this package, so the execd path never loads it. `view` turns a gather's
metrics into a snapshot, `render` turns a snapshot into lines (both pure), `terminal` draws them, `app`
runs the gather loop.
"""
