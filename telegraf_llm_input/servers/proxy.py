"""Our own measuring proxy (`telegraf-llm-input proxy`): its page at `/proxy/metrics`, names `llm_proxy_*`.

The proxy measures what clients felt in front of any server (Ollama, LM Studio, llama.cpp, an OpenAI-compatible
gateway), with vLLM's meaning: its histograms map onto the same fields, so every panel and alert on
ttft/itl/tpot/e2e/requests_per_s works unchanged. Label `model` is what the request asked for; `api` and
`counted` (server's token count or chunks counted) are summed over. Requests finish with an `outcome`
(`requests_finished_<outcome>_total`); the failed ones are `request_errors_total` (`error_ratio`), those the
upstream answered 4xx the caller's mistakes (`client_error_ratio`, as the Ollama log source counts them).
"""

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.proxy.names import CLIENT_ERROR, OUTCOMES_FAILED, PAGE_PATH
from telegraf_llm_input.servers.base import Rule
from telegraf_llm_input.servers.promadapter import PromAdapter
from telegraf_llm_input.servers.promtable import PromTable

TYPE = "proxy"
NAME = "telegraf-llm-input proxy"

TABLE = PromTable(
    server_type=TYPE,
    prefix="llm_proxy_",
    model_label="model",
    gauges={"requests_running": ("llm_proxy_requests_in_flight",)},
    counters={
        "prompt_tokens_total": ("llm_proxy_prompt_tokens_total",),
        "generation_tokens_total": ("llm_proxy_generation_tokens_total",),
        "requests_total": ("llm_proxy_requests_total",),
    },
    finish_reason=("llm_proxy_requests_total", "outcome"),
    errors_where=("llm_proxy_requests_total", "outcome", OUTCOMES_FAILED),
    speeds={"client_error_ratio": (f"requests_finished_{CLIENT_ERROR}_total", "requests_total")},
    histograms={
        "ttft": ("llm_proxy_time_to_first_token_seconds",),
        "ttfa": ("llm_proxy_time_to_first_answer_seconds",),
        "itl": ("llm_proxy_inter_token_latency_seconds",),
        "tpot": ("llm_proxy_request_time_per_output_token_seconds",),
        "e2e": ("llm_proxy_e2e_request_latency_seconds",),
        "load": ("llm_proxy_load_duration_seconds",),
    },
    token_histograms={
        "request_prompt_tokens": ("llm_proxy_request_prompt_tokens",),
        "request_generation_tokens": ("llm_proxy_request_generation_tokens",),
    },
    path=PAGE_PATH,
)


def make(target: TargetConfig) -> PromAdapter:
    return PromAdapter(TABLE)


DETECT = (Rule(PAGE_PATH, contains="llm_proxy_"),)
