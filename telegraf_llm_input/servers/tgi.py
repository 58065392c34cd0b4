"""Hugging Face TGI router: `tgi_` names without a model label; the model comes from `/info`.

Counters have no `_total` suffix. Token totals are the `_sum` of the per-request token histograms.
The version is `/info` `version`, from the same
answer that names the model (no request of its own).
"""

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError
from telegraf_llm_input.servers.base import Fetcher, Rule, version_tags
from telegraf_llm_input.servers.promadapter import PromAdapter
from telegraf_llm_input.servers.promtable import PromTable

TYPE = "tgi"
NAME = "TGI"

TABLE = PromTable(
    server_type=TYPE,
    prefix="tgi_",
    model_label=None,
    gauges={
        "requests_running": ("tgi_batch_current_size",),
        "requests_waiting": ("tgi_queue_size",),
    },
    counters={
        "prompt_tokens_total": ("tgi_request_input_length_sum",),
        "generation_tokens_total": ("tgi_request_generated_tokens_sum",),
        "requests_total": ("tgi_request_count",),
        "request_errors_total": ("tgi_request_failure",),
    },
    histograms={
        "e2e": ("tgi_request_duration",),
        "queue": ("tgi_request_queue_duration",),
        "tpot": ("tgi_request_mean_time_per_token_duration",),
    },
    token_histograms={
        "request_prompt_tokens": ("tgi_request_input_length",),
        "request_generation_tokens": ("tgi_request_generated_tokens",),
        "request_max_tokens": ("tgi_request_max_new_tokens",),
    },
)


class TgiAdapter(PromAdapter):
    async def default_model(self, fetch: Fetcher) -> str | None:
        try:
            info = await fetch.json("/info")
        except FetchError:
            return None
        if isinstance(info, dict) and version_tags(info.get("version")):
            self.version = info["version"]
        model = info.get("model_id") if isinstance(info, dict) else None
        return model if isinstance(model, str) and model else None


def make(target: TargetConfig) -> TgiAdapter:
    return TgiAdapter(TABLE)


DETECT = (Rule("/metrics", contains="tgi_"), Rule("/info", keys=("model_id", "max_concurrent_requests")))
