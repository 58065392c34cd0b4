"""One interval's requests and model loads from a server log -> `llm_server` fields, the histogram fields' names.

Percentiles are exact over the interval's requests (quantiles.py, numpy's linear method); a sketch only past
`EXACT_LIMIT` requests per interval. Pure: no I/O, no clock (the caller gives the interval's length).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from telegraf_llm_input.quantiles import Accumulator
from telegraf_llm_input.serverlogs.base import Event, ModelLoad, Request

EXACT_LIMIT = 100_000
LATENCY_QUANTILES = ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99"))
"""As `servers.base.QUANTILES`: the same fields a histogram gives."""
COUNT_QUANTILES = ((0.5, "p50"), (0.95, "p95"))


def _acc() -> Accumulator:
    return Accumulator(EXACT_LIMIT)


@dataclass
class ApiInterval:
    """The requests of one API class (generate, embed) in one interval."""

    requests: int = 0
    with_status: int = 0
    server_errors: int = 0
    client_errors: int = 0
    e2e: Accumulator = field(default_factory=_acc)
    prefill: Accumulator = field(default_factory=_acc)
    tpot: Accumulator = field(default_factory=_acc)
    prompt_tokens: Accumulator = field(default_factory=_acc)
    generation_tokens: Accumulator = field(default_factory=_acc)

    def add(self, r: Request) -> None:
        self.requests += 1
        if r.status is not None:
            self.with_status += 1
            if r.status >= 500:
                self.server_errors += 1
            elif r.status >= 400:
                self.client_errors += 1
        if r.e2e_ms is not None:
            self.e2e.add(r.e2e_ms)
        if r.prefill_ms is not None:
            self.prefill.add(r.prefill_ms)
        tpot = r.tpot_ms
        if tpot is not None:
            self.tpot.add(tpot)
        if r.prompt_tokens is not None:
            self.prompt_tokens.add(r.prompt_tokens)
        if r.generation_tokens is not None:
            self.generation_tokens.add(r.generation_tokens)

    def fields(self, seconds: float) -> dict[str, float]:
        out: dict[str, float] = {"requests_per_s": self.requests / seconds if seconds > 0 else 0.0}
        if self.with_status:
            out["error_ratio"] = self.server_errors / self.with_status
            out["client_error_ratio"] = self.client_errors / self.with_status
        for prefix, acc in (("e2e", self.e2e), ("prefill", self.prefill), ("tpot", self.tpot)):
            _summary(out, acc, prefix, "_ms", LATENCY_QUANTILES)
        for prefix, acc in (
            ("request_prompt_tokens", self.prompt_tokens),
            ("request_generation_tokens", self.generation_tokens),
        ):
            _summary(out, acc, prefix, "", COUNT_QUANTILES)
        return out


def _summary(out: dict[str, float], acc: Accumulator, prefix: str, suffix: str, quantiles) -> None:
    """Percentiles and mean, absent when nothing was measured (as a histogram with no new observations)."""
    if not acc.count:
        return
    for q, label in quantiles:
        value = acc.quantile(q)
        if value is not None:
            out[f"{prefix}_{label}{suffix}"] = value
    mean = acc.mean()
    if mean is not None:
        out[f"{prefix}_mean{suffix}"] = mean


@dataclass
class Interval:
    """Everything one interval of a server's log said."""

    apis: dict[str, ApiInterval] = field(default_factory=dict)
    loads: int = 0
    last_load_s: float | None = None

    def add(self, events: Iterable[Event]) -> None:
        for e in events:
            if isinstance(e, Request):
                api = self.apis.get(e.api)
                if api is None:
                    api = self.apis[e.api] = ApiInterval()
                api.add(e)
            elif isinstance(e, ModelLoad):
                self.loads += 1
                self.last_load_s = e.seconds

    def load_fields(self, seconds: float) -> dict[str, float]:
        out = {"model_loads_per_s": self.loads / seconds if seconds > 0 else 0.0}
        if self.last_load_s is not None:
            out["model_load_seconds"] = self.last_load_s
        return out
