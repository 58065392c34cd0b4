"""Energy per token: GPU joules over the interval divided by the tokens a target generated in it.

Needs two sources at once (the GPU's energy counter, the server's token counter), so it is a
Processor: it reads `llm_gpu.energy_total_j`, `llm_process.gpu_indices` and
`llm_server.generation_tokens_total` from the same gather and adds `energy_j_per_token` to
`llm_server`. When several targets share a GPU, each is charged that GPU's whole energy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from telegraf_llm_input.config import Config
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.rates import counter_delta

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config

TOKENS_FIELD = "generation_tokens_total"
FIELD = "energy_j_per_token"


def energy_per_token(
    prev_tokens: float, prev_energy_j: Mapping[str, float], tokens: float, energy_j: Mapping[str, float]
) -> float | None:
    """Joules per generated token between two samples of (tokens counter, per-GPU energy counters).

    None when no token was generated, when a counter went backwards (server restart, driver
    reload), or when the two samples do not cover the same GPUs.
    """
    if set(prev_energy_j) != set(energy_j) or not energy_j:
        return None
    d_tokens = counter_delta(prev_tokens, tokens)
    if not d_tokens:
        return None
    d_energy = 0.0
    for gpu, joules in energy_j.items():
        delta = counter_delta(prev_energy_j[gpu], joules)
        if delta is None:
            return None
        d_energy += delta
    return d_energy / d_tokens


@dataclass(frozen=True)
class _Sample:
    tokens: float
    energy_j: dict[str, float]


class EnergyPerToken:
    """Adds `energy_j_per_token` to each target's `llm_server` metrics (a Processor)."""

    def __init__(self, configured_gpus: Mapping[str, Sequence[int]] | None = None):
        self._configured = {t: [str(i) for i in gpus] for t, gpus in (configured_gpus or {}).items()}
        self._prev: dict[str, _Sample] = {}

    def process(self, metrics: list[Metric]) -> list[Metric]:
        energy: dict[str, float] = {}
        held: dict[str, list[str]] = {}
        tokens: dict[str, float] = {}
        for m in metrics:
            if m.measurement == "llm_gpu" and "energy_total_j" in m.fields and "index" in m.tags:
                energy[m.tags["index"]] = float(m.fields["energy_total_j"])
            elif m.measurement == "llm_process" and "target" in m.tags and m.fields.get("gpu_indices"):
                held[m.tags["target"]] = str(m.fields["gpu_indices"]).split(",")
            elif m.measurement == "llm_server" and "target" in m.tags and TOKENS_FIELD in m.fields:
                # several llm_server metrics per target (one per model): their tokens all ran on its GPUs
                target = m.tags["target"]
                tokens[target] = tokens.get(target, 0.0) + float(m.fields[TOKENS_FIELD])

        values: dict[str, float] = {}
        for target, total in tokens.items():
            gpus = self._configured.get(target) or held.get(target)
            if not gpus or any(g not in energy for g in gpus):
                self._prev.pop(target, None)  # a gap: start over rather than span it
                continue
            now = _Sample(total, {g: energy[g] for g in gpus})
            prev = self._prev.get(target)
            self._prev[target] = now
            if prev is not None:
                value = energy_per_token(prev.tokens, prev.energy_j, now.tokens, now.energy_j)
                if value is not None:
                    values[target] = value
        for gone in set(self._prev) - set(tokens):
            del self._prev[gone]
        if not values:
            return metrics
        return [
            replace(m, fields={**m.fields, FIELD: values[m.tags["target"]]})
            if m.measurement == "llm_server" and TOKENS_FIELD in m.fields and m.tags.get("target") in values
            else m
            for m in metrics
        ]


def build(config: Config) -> list[EnergyPerToken]:
    if config.gpu.enabled is False:
        return []
    return [EnergyPerToken({t.display_name: t.gpus for t in config.targets or [] if t.gpus})]
