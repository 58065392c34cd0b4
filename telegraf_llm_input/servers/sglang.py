"""SGLang (`--enable-metrics`): `sglang:` names; scheduler gauges carry rank labels
(`tp_rank`, `pp_rank`, `dp`, `moe_ep_rank`...) which are summed (ratios averaged) per `model_name`.

Token counters and `cached_tokens_total` count finished requests, so their interval ratios are per
finished request; the length histograms need `--collect-tokens-histogram`; the version is
`/get_server_info` `version`."""

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.servers.base import Rule
from telegraf_llm_input.servers.promadapter import PromAdapter
from telegraf_llm_input.servers.promtable import PromTable

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
        # the scheduler's recent-window gauges; the cached-token counter below wins where the page has it
        "prefix_cache_hit_ratio": ("sglang:cache_hit_rate",),
        "spec_decode_acceptance_ratio": ("sglang:spec_accept_rate",),
        "spec_decode_mean_accept_length": ("sglang:spec_accept_length",),
    },
    averaged=frozenset(
        {
            "kv_cache_usage_ratio",
            "prefix_cache_hit_ratio",
            "spec_decode_acceptance_ratio",
            "spec_decode_mean_accept_length",
        }
    ),
    counters={
        "prompt_tokens_total": ("sglang:prompt_tokens_total",),
        "generation_tokens_total": ("sglang:generation_tokens_total",),
        "requests_total": ("sglang:num_requests_total",),
        "prefix_cache_hits_total": ("sglang:cached_tokens_total",),
    },
    speeds={
        "prefix_cache_hit_ratio": ("prefix_cache_hits_total", "prompt_tokens_total"),
        # the histograms' means replace these where SGLang has them
        "request_prompt_tokens_mean": ("prompt_tokens_total", "requests_total"),
        "request_generation_tokens_mean": ("generation_tokens_total", "requests_total"),
    },
    histograms={
        "ttft": ("sglang:time_to_first_token_seconds",),
        "itl": ("sglang:inter_token_latency_seconds",),
        "tpot": ("sglang:time_per_output_token_seconds",),  # per request, unlike vLLM's old name
        "e2e": ("sglang:e2e_request_latency_seconds",),
        "queue": ("sglang:queue_time_seconds",),
    },
    token_histograms={
        "request_prompt_tokens": ("sglang:prompt_tokens_histogram",),
        "request_generation_tokens": ("sglang:generation_tokens_histogram",),
    },
    version=("/get_server_info", "version"),
)


def make(target: TargetConfig) -> PromAdapter:
    return PromAdapter(TABLE)


DETECT = (
    Rule("/metrics", contains="sglang:"),
    Rule("/get_server_info", keys=("model_path",), any_keys=("tp_size", "version")),
)
