"""SGLang (`--enable-metrics`): `sglang:` names; scheduler gauges carry rank labels
(`tp_rank`, `pp_rank`, `dp`, `moe_ep_rank`...) which are summed (ratios averaged) per `model_name`."""

from telegraf_llm_input.servers.promtable import PromAdapter, PromTable
from telegraf_llm_input.targets import TargetConfig

TYPE = "sglang"
NAME = "SGLang"

TABLE = PromTable(
    server_type=TYPE,
    prefix="sglang:",
    model_label="model_name",
    gauges={
        "requests_running": ("sglang:num_running_reqs",),
        "requests_waiting": ("sglang:num_queue_reqs",),
        "kv_cache_usage_ratio": ("sglang:token_usage",),
    },
    averaged=frozenset({"kv_cache_usage_ratio"}),
    counters={
        "prompt_tokens_total": ("sglang:prompt_tokens_total",),
        "generation_tokens_total": ("sglang:generation_tokens_total",),
        "requests_total": ("sglang:num_requests_total",),
    },
    histograms={
        "ttft": ("sglang:time_to_first_token_seconds",),
        "itl": ("sglang:inter_token_latency_seconds",),
        "tpot": ("sglang:time_per_output_token_seconds",),  # per request, unlike vLLM's old name
        "e2e": ("sglang:e2e_request_latency_seconds",),
        "queue": ("sglang:queue_time_seconds",),
    },
)


def make(target: TargetConfig) -> PromAdapter:
    return PromAdapter(TABLE)


async def detect(answers) -> bool:
    page = await answers.text("/metrics")
    if page is not None and "sglang:" in page:
        return True
    info = await answers.json("/get_server_info")
    return isinstance(info, dict) and "model_path" in info and ("tp_size" in info or "version" in info)
