"""vLLM (`vllm serve`): `/metrics` with `vllm:` names, labels `model_name` and `engine`.

V1 names first, the older ones after (gpu_cache_usage_perc; time_per_output_token_seconds was
the inter-token histogram before it was renamed). `/metrics` is open even with `--api-key`.
"""

from telegraf_llm_input.servers.promtable import PromAdapter, PromTable
from telegraf_llm_input.targets import TargetConfig

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
    },
    averaged=frozenset({"kv_cache_usage_ratio"}),
    counters={
        "prompt_tokens_total": ("vllm:prompt_tokens_total",),
        "generation_tokens_total": ("vllm:generation_tokens_total",),
        "requests_total": ("vllm:request_success_total",),
        "preemptions_total": ("vllm:num_preemptions_total",),
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
)


def make(target: TargetConfig) -> PromAdapter:
    return PromAdapter(TABLE)


async def detect(answers) -> bool:
    page = await answers.text("/metrics")
    return page is not None and "vllm:" in page
