"""How long mapping a vLLM page to llm_server takes, next to parsing it (the baseline, same run).

Pages: 1, 8 and 64 models x 2 engines, 7 latency histograms with 21 buckets each.
Prints parse ms, map ms (table + interval derive) and map/parse.
Run: python3 bench/server_mapping.py
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telegraf_llm_input.promtext import parse  # noqa: E402
from telegraf_llm_input.servers.promtable import read_page  # noqa: E402
from telegraf_llm_input.servers.vllm import TABLE  # noqa: E402
from telegraf_llm_input.sources.target import Baseline, derive  # noqa: E402
from tests.fakes.llm import Snap, vllm_page  # noqa: E402

BOUNDS = [0.001 * 2**i for i in range(20)]
PREFIXES = ("ttft", "itl", "tpot", "e2e", "queue", "prefill", "decode")


def best_of(fn, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    print(f"{'models':>6} {'page KiB':>9} {'parse ms':>9} {'map ms':>8} {'map/parse':>9}")
    for n in (1, 8, 64):
        snaps = {
            f"org/model-{i}": Snap(
                prompt=1000,
                generation=2000,
                finished={"stop": 10, "length": 2},
                hists={k: (BOUNDS, list(range(21)), 3.0) for k in PREFIXES},
            )
            for i in range(n)
        }
        text = vllm_page(snaps, engines=2)
        page = parse(text)
        prev = {r.model: Baseline.zero(r, 0) for r in read_page(TABLE, page)}

        def mapping(page=page, prev=prev):
            for r in read_page(TABLE, page):
                derive(prev[r.model], r, 10 * 10**9)

        t_parse = best_of(lambda text=text: parse(text))
        t_map = best_of(mapping)
        print(f"{n:>6} {len(text) / 1024:>9.0f} {t_parse * 1000:>9.1f} {t_map * 1000:>8.1f} {t_map / t_parse:>9.2f}")


if __name__ == "__main__":
    main()
