"""Line protocol: lines/s of our encoder vs influxdb_client's `Point(...).to_line_protocol()`.

The metrics are what one gather of a busy box produces: llm_server rows with ~30 int/float fields and five tags,
like a vLLM target with latency percentiles. Both encoders get the same data and must give the same line count.
Run: python3 -m bench.lineproto
"""

from __future__ import annotations

import random
import time

from influxdb_client import Point, WritePrecision

from bench.report import best_of, record
from telegraf_llm_input.lineprotocol import encode_batch
from telegraf_llm_input.metric import Metric

N_METRICS = 2000
ROUNDS = 5


def sample_metrics(n: int = N_METRICS, seed: int = 7) -> list[Metric]:
    rng = random.Random(seed)
    fields_int = [
        "prompt_tokens_total",
        "generation_tokens_total",
        "requests_total",
        "request_errors_total",
        "preemptions_total",
        "requests_running",
        "requests_waiting",
        "slots_total",
        "slots_busy",
        "up",
    ]
    fields_float = [
        "kv_cache_usage_ratio",
        "prompt_tokens_per_s",
        "generation_tokens_per_s",
        "requests_per_s",
        "scrape_ms",
    ] + [f"{k}_{q}_ms" for k in ("ttft", "itl", "e2e", "queue") for q in ("p50", "p90", "p95", "p99", "mean")]
    out = []
    for i in range(n):
        tags = {
            "server_type": "vllm",
            "model": f"org/model-{i % 8}-7B-Instruct",
            "target": f"gpu-box-{i % 4}:8000",
            "host": "model-box-1",
            "env": "prod",
        }
        fields: dict[str, int | float] = {k: rng.randrange(0, 10**9) for k in fields_int}
        fields.update({k: rng.random() * 1000 for k in fields_float})
        out.append(Metric("llm_server", tags, fields, 1_700_000_000_000_000_000 + i * 10**9))
    return out


def ours(metrics: list[Metric]) -> int:
    return encode_batch(metrics).lines


def influxdb_client_points(metrics: list[Metric]) -> int:
    lines = []
    for m in metrics:
        point = Point(m.measurement)
        for k, v in m.tags.items():
            point.tag(k, v)
        for k, v in m.fields.items():
            point.field(k, v)
        point.time(m.time_ns, WritePrecision.NS)
        lines.append(point.to_line_protocol())
    return len(lines)


def main() -> None:
    metrics = sample_metrics()
    n_ours, n_ref = ours(metrics), influxdb_client_points(metrics)
    if n_ours != n_ref:
        raise SystemExit(f"line counts differ: ours {n_ours}, influxdb_client {n_ref}")
    # Alternate the two, CPU time, fastest of each: both see the same load on a shared machine.
    t_ours = t_ref = float("inf")
    for _ in range(ROUNDS):
        t_ours = min(t_ours, best_of(lambda: ours(metrics), min_runs=3, min_seconds=0.2, clock=time.process_time))
        t_ref = min(
            t_ref,
            best_of(lambda: influxdb_client_points(metrics), min_runs=2, min_seconds=0.2, clock=time.process_time),
        )
    record(
        "line protocol",
        f"encode {N_METRICS} llm_server metrics (30 fields)",
        f"{n_ours / t_ours:,.0f} lines/s",
        "influxdb_client Point.to_line_protocol()",
        f"{n_ref / t_ref:,.0f} lines/s",
        f"{t_ref / t_ours:.2f}x (ours / baseline lines/s)",
    )


if __name__ == "__main__":
    main()
