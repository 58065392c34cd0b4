"""Page builders for TGI (Rust exporter style) and SGLang (ranked scheduler gauges)."""

from __future__ import annotations

from tests.fakes.pages import histogram, sample
from tests.fakes.server import FakeServer, Reply


def tgi_page(
    success: int,
    failures: dict[str, int],
    queue: int,
    batch: int,
    input_sum: float,
    gen_sum: float,
    e2e: tuple[list[float], list[float], float],
    max_new_sum: float | None = None,
    lengths: dict[str, tuple[list[float], list[float], float]] | None = None,
) -> str:
    """No `# HELP`, counters without `_total`, integers without `.0`; model only in `/info`.

    `lengths`: histogram name -> (bounds, cumulative, sum) replacing the default token histograms."""
    total = success + sum(failures.values())
    lines = [
        "# TYPE tgi_request_count counter",
        sample("tgi_request_count", {}, total, "rust"),
        "# TYPE tgi_request_success counter",
        sample("tgi_request_success", {}, success, "rust"),
    ]
    if failures:
        lines.append("# TYPE tgi_request_failure counter")
        lines += [sample("tgi_request_failure", {"err": k}, v, "rust") for k, v in failures.items()]
    lines += [
        "# TYPE tgi_queue_size gauge",
        sample("tgi_queue_size", {}, queue, "rust"),
        "# TYPE tgi_batch_current_size gauge",
        sample("tgi_batch_current_size", {}, batch, "rust"),
    ]
    bounds, cum, s = e2e
    lines += ["# TYPE tgi_request_duration histogram", *histogram("tgi_request_duration", {}, bounds, cum, s, "rust")]
    sums = [("tgi_request_input_length", input_sum), ("tgi_request_generated_tokens", gen_sum)]
    if max_new_sum is not None:
        sums.append(("tgi_request_max_new_tokens", max_new_sum))
    for name, value in sums:
        bounds, cum, value = (lengths or {}).get(name, ([10.0, 100.0], [0, total, total], value))
        lines += [f"# TYPE {name} histogram", *histogram(name, {}, bounds, cum, value, "rust")]
    return "\n".join(lines) + "\n"


TGI_INFO = {
    "model_id": "mistralai/Mistral-7B-Instruct-v0.3",
    "model_sha": None,
    "model_pipeline_tag": None,
    "max_concurrent_requests": 128,
    "max_best_of": 2,
    "max_stop_sequences": 4,
    "max_input_tokens": 1024,
    "max_total_tokens": 2048,
    "validation_workers": 2,
    "max_client_batch_size": 4,
    "router": "text-generation-router",
    "version": "3.0.1",
    "sha": None,
    "docker_label": None,
}


def fake_tgi(pages: list[str]) -> FakeServer:
    return FakeServer({"/metrics": [Reply(p) for p in pages], "/info": Reply(TGI_INFO)})


def sglang_page(
    model: str,
    ranks: int,
    running_per_rank: int,
    usage: list[float],
    prompt: float,
    gen: float,
    requests: float,
    ttft: tuple[list[float], list[float], float],
    cached: float | None = None,
    hit_rate: float | None = None,
    spec: tuple[float, float] | None = None,
    lengths: dict[str, tuple[list[float], list[float], float]] | None = None,
) -> str:
    """`cached`: `cached_tokens_total`; `hit_rate`: the `cache_hit_rate` gauge; `spec`: (`spec_accept_length`,
    `spec_accept_rate`) per rank; `lengths`: `prompt`/`generation` -> the `--collect-tokens-histogram` histograms."""
    lines = ["# HELP sglang:num_running_reqs The number of running requests.", "# TYPE sglang:num_running_reqs gauge"]
    rank_labels = [
        {"engine_type": "unified", "model_name": model, "moe_ep_rank": "0", "pp_rank": "0", "tp_rank": str(r)}
        for r in range(ranks)
    ]
    lines += [sample("sglang:num_running_reqs", lab, running_per_rank) for lab in rank_labels]
    lines += ["# HELP sglang:num_queue_reqs q", "# TYPE sglang:num_queue_reqs gauge"]
    lines += [sample("sglang:num_queue_reqs", lab, 1) for lab in rank_labels]
    lines += ["# HELP sglang:token_usage u", "# TYPE sglang:token_usage gauge"]
    lines += [sample("sglang:token_usage", lab, u) for lab, u in zip(rank_labels, usage)]
    if hit_rate is not None:
        lines += ["# HELP sglang:cache_hit_rate h", "# TYPE sglang:cache_hit_rate gauge"]
        lines += [sample("sglang:cache_hit_rate", lab, hit_rate) for lab in rank_labels]
    if spec is not None:
        for name, value in (("sglang:spec_accept_length", spec[0]), ("sglang:spec_accept_rate", spec[1])):
            lines += [f"# HELP {name} h", f"# TYPE {name} gauge", *(sample(name, lab, value) for lab in rank_labels)]
    for name, value in (
        ("sglang:prompt_tokens", prompt),
        ("sglang:generation_tokens", gen),
        ("sglang:num_requests", requests),
        *((("sglang:cached_tokens", cached),) if cached is not None else ()),
    ):
        lines += [
            f"# HELP {name}_total h",
            f"# TYPE {name}_total counter",
            sample(name + "_total", {"model_name": model}, value),
        ]
    for ours, (lb, lc, ls) in (lengths or {}).items():
        name = f"sglang:{ours}_tokens_histogram"
        lines += [f"# HELP {name} h", f"# TYPE {name} histogram", *histogram(name, {"model_name": model}, lb, lc, ls)]
    bounds, cum, s = ttft
    lines += [
        "# HELP sglang:time_to_first_token_seconds h",
        "# TYPE sglang:time_to_first_token_seconds histogram",
        *histogram("sglang:time_to_first_token_seconds", {"model_name": model}, bounds, cum, s),
    ]
    return "\n".join(lines) + "\n"


def fake_sglang(pages: list[str]) -> FakeServer:
    return FakeServer(
        {
            "/metrics": [Reply(p) for p in pages],
            "/get_server_info": Reply({"model_path": "Qwen/Qwen2.5-7B-Instruct", "tp_size": 2, "version": "0.4.9"}),
        }
    )
