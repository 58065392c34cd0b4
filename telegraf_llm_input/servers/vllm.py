"""vLLM (`vllm serve`): `/metrics` with `vllm:` names, labels `model_name` and `engine`.

V1 names first, the older ones after (gpu_cache_usage_perc; time_per_output_token_seconds was
the inter-token histogram before it was renamed; gpu_prefix_cache_* before 0.9 became prefix_cache_*;
V0's rate gauges last). `/metrics` is open even with `--api-key`. Spec-decode counters are only
there with `--speculative-config`, `lora_requests_info` only with `--enable-lora`; the version is
`/version` (no metric carries it).
"""

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.servers.base import Rule
from telegraf_llm_input.servers.promadapter import PromAdapter
from telegraf_llm_input.servers.promtable import InfoLabels, PromTable

TYPE = "vllm"
NAME = "vLLM"

TABLE = PromTable(
    server_type=TYPE,
    prefix="vllm:",
    model_label="model_name",
    gauges={
        "requests_running": ("vllm:num_requests_running",),
        "requests_waiting": ("vllm:num_requests_waiting",),
        "kv_cache_usage_ratio": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        # V0 gauges; V1 counts queries and hits (the ratios below, over the interval)
        "prefix_cache_hit_ratio": ("vllm:gpu_prefix_cache_hit_rate",),
        "spec_decode_acceptance_ratio": ("vllm:spec_decode_draft_acceptance_rate",),
    },
    averaged=frozenset({"kv_cache_usage_ratio", "prefix_cache_hit_ratio", "spec_decode_acceptance_ratio"}),
    counters={
        "prompt_tokens_total": ("vllm:prompt_tokens_total",),
        "generation_tokens_total": ("vllm:generation_tokens_total",),
        "requests_total": ("vllm:request_success_total",),
        "preemptions_total": ("vllm:num_preemptions_total",),
        "prefix_cache_queries_total": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
        "prefix_cache_hits_total": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
        "spec_decode_draft_tokens_total": ("vllm:spec_decode_num_draft_tokens_total",),
        "spec_decode_accepted_tokens_total": ("vllm:spec_decode_num_accepted_tokens_total",),
        "spec_decode_drafts_total": ("vllm:spec_decode_num_drafts_total",),
    },
    speeds={
        "prefix_cache_hit_ratio": ("prefix_cache_hits_total", "prefix_cache_queries_total"),
        "spec_decode_acceptance_ratio": ("spec_decode_accepted_tokens_total", "spec_decode_draft_tokens_total"),
        # vLLM's "mean acceptance length" counts the bonus token every draft step also gives
        "spec_decode_mean_accept_length": ("spec_decode_accepted_tokens_total", "spec_decode_drafts_total", 1.0),
    },
    finish_reason=("vllm:request_success_total", "finished_reason"),
    errors_where=("vllm:request_success_total", "finished_reason", ("error",)),
    histograms={
        "ttft": ("vllm:time_to_first_token_seconds",),
        "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
        "tpot": ("vllm:request_time_per_output_token_seconds",),
        "e2e": ("vllm:e2e_request_latency_seconds",),
        "queue": ("vllm:request_queue_time_seconds",),
        "prefill": ("vllm:request_prefill_time_seconds",),
        "decode": ("vllm:request_decode_time_seconds",),
    },
    token_histograms={
        "request_prompt_tokens": ("vllm:request_prompt_tokens",),
        "request_generation_tokens": ("vllm:request_generation_tokens",),
        "request_max_tokens": ("vllm:request_params_max_tokens",),
    },
    info=(
        InfoLabels(
            "vllm:lora_requests_info",
            lists={"lora_adapters_running": "running_lora_adapters", "lora_adapters_waiting": "waiting_lora_adapters"},
            numbers={"lora_adapters_max": "max_lora"},
        ),
    ),
    version=("/version", "version"),
)


def make(target: TargetConfig) -> PromAdapter:
    return PromAdapter(TABLE)


DETECT = (Rule("/metrics", contains="vllm:"),)
