"""Parser speed: telegraf_llm_input.promtext.parse vs prometheus_client.parser.

Pages are vLLM-like: every family of tests/fixtures/prometheus/vllm.txt repeated for 1, 8 and 64
models (different `model_name` values). Prints samples/s for both parsers and the ratio.
Run: python3 -m bench.parser
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from telegraf_llm_input.promtext import parse

TEMPLATE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "prometheus" / "vllm.txt"
TEMPLATE_MODEL = "Qwen/Qwen2.5-7B-Instruct"
SIZES = (1, 8, 64)


def vllm_page(models: int) -> str:
    """The template page with each family's samples repeated once per model, families kept whole."""
    blocks: list[tuple[list[str], list[str]]] = []
    for line in TEMPLATE.read_text().splitlines():
        if line.startswith("#"):
            if not blocks or blocks[-1][1]:
                blocks.append(([], []))
            blocks[-1][0].append(line)
        elif line:
            if not blocks:
                blocks.append(([], []))
            blocks[-1][1].append(line)
    names = [f"org-{i}/model-{i}-7B-Instruct" for i in range(models)]
    out: list[str] = []
    for header, samples in blocks:
        out.extend(header)
        for name in names:
            out.extend(s.replace(TEMPLATE_MODEL, name) for s in samples)
    return "\n".join(out) + "\n"


def _reference(text: str) -> int:
    return sum(len(family.samples) for family in text_string_to_metric_families(text))


def _ours(text: str) -> int:
    return len(parse(text).samples)


def _best(fn, text: str, min_runs: int, min_seconds: float) -> tuple[float, int]:
    """Fastest of several runs (at least min_runs, and until min_seconds have passed)."""
    best = float("inf")
    runs = 0
    start = time.perf_counter()
    n = 0
    while runs < min_runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        n = fn(text)
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best, n


def main() -> None:
    print(
        f"{'models':>6} {'lines':>7} {'samples':>8} {'ours samples/s':>15} {'prometheus_client samples/s':>28} {'ratio':>6}"
    )
    for models in SIZES:
        text = vllm_page(models)
        ours_s, ours_n = _best(_ours, text, min_runs=5, min_seconds=1.0)
        ref_s, ref_n = _best(_reference, text, min_runs=3, min_seconds=1.0)
        if ours_n != ref_n:
            raise SystemExit(f"sample counts differ: ours {ours_n}, prometheus_client {ref_n}")
        print(
            f"{models:>6} {text.count(chr(10)):>7} {ours_n:>8} {ours_n / ours_s:>15,.0f}"
            f" {ref_n / ref_s:>28,.0f} {ref_s / ours_s:>5.1f}x"
        )
    print("baseline: prometheus_client.parser.text_string_to_metric_families (consumed fully), same run")


if __name__ == "__main__":
    main()
