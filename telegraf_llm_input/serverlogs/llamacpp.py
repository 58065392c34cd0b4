"""llama-server's log: one `print_timing` block per finished request (tools/server/server-context.cpp).

    slot print_timing: id  1 | task 517 | prompt eval time =       4.75 ms /   192 tokens (    0.02 ms per token, ...)
    slot print_timing: id  1 | task 517 |        eval time =      69.82 ms /    85 tokens (    0.82 ms per token, ...)
    slot print_timing: id  1 | task 517 |       total time =      74.57 ms /   277 tokens
(`SLT_INF` cuts the function name to 12 characters; `--log-prefix`/`--log-timestamps` put `0.12.345.678 I ` in
front, a terminal adds colours, JSON-lines output has the same text in `msg`: the pattern is searched, not anchored.) A request is complete at its `total time`
line; the slot id and task number tie the three lines together. The lines carry no path and no status: every
block is a finished completion (embeddings print none), so llama.cpp gives no error ratio from its log.
"""

from __future__ import annotations

import re

from telegraf_llm_input.serverlogs.base import GENERATE, Event, Request, plain

TYPE = "llamacpp"
_PCT = ("p50", "p90", "p95", "p99", "mean")
FIELDS = (
    "requests_per_s",
    *(f"{kind}_{p}_ms" for kind in ("e2e", "prefill", "tpot") for p in _PCT),
    *(f"request_{kind}_tokens_{p}" for kind in ("prompt", "generation") for p in ("p50", "p95", "mean")),
)
"""llm_server fields its log gives (docs/metrics.md)."""

TIMING = re.compile(
    r"print_timing: id\s+(?P<slot>-?\d+) \| task (?P<task>-?\d+) \|\s*(?P<what>prompt eval|eval|total) time =\s*"
    r"(?P<ms>\d+(?:\.\d+)?) ms /\s*(?P<tokens>\d+) tokens"
)
_PARTS = ("prompt eval", "eval")
"""The lines of a block before its `total time`."""
MAX_PENDING = 1024
"""Unfinished blocks kept (a block cut by a rotation or a crash must not grow memory)."""


class Parser:
    """Collects the lines of each slot's block; the `total time` line completes it."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], dict[str, tuple[float, int]]] = {}

    def carry(self) -> list[object]:
        return [
            [slot, task, {what: list(v) for what, v in block.items()}] for (slot, task), block in self._pending.items()
        ]

    def resume(self, carried: object) -> None:
        for item in carried if isinstance(carried, list) else []:
            try:
                slot, task, block = item
                lines = {str(what): (float(ms), int(n)) for what, (ms, n) in block.items() if what in _PARTS}
            except (TypeError, ValueError, AttributeError):
                continue
            if isinstance(slot, str) and isinstance(task, str) and len(self._pending) < MAX_PENDING:
                self._pending[(slot, task)] = lines

    def feed(self, line: str) -> list[Event]:
        if "print_timing" not in line:
            return []
        m = TIMING.search(plain(line))
        if m is None:
            return []
        key = (m["slot"], m["task"])
        block = self._pending.setdefault(key, {})
        block[m["what"]] = (float(m["ms"]), int(m["tokens"]))
        if m["what"] != "total":
            if len(self._pending) > MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            return []
        del self._pending[key]
        total_ms, _ = block["total"]
        prefill_ms, prompt_tokens = block.get("prompt eval", (None, None))
        decode_ms, generated = block.get("eval", (None, None))
        return [
            Request(
                api=GENERATE,
                e2e_ms=total_ms,
                prefill_ms=prefill_ms,
                prompt_tokens=prompt_tokens,
                decode_ms=decode_ms,
                generation_tokens=generated,
            )
        ]
