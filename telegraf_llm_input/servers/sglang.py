"""SGLang (`--enable-metrics`): `sglang:` names; scheduler gauges carry rank labels
(`tp_rank`, `pp_rank`, `dp`, `moe_ep_rank`...) which are summed (ratios averaged) per `model_name`."""

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.servers.base import Rule
from telegraf_llm_input.servers.promtable import PromAdapter, PromTable

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


DETECT = (Rule("/metrics", contains="sglang:"),
          Rule("/get_server_info", keys=("model_path",), any_keys=("tp_size", "version")))
