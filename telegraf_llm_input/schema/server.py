"""`llm_server` (every server type) and `llm_model_loaded` (Ollama)."""

from telegraf_llm_input.schema.base import Field, Measurement
from telegraf_llm_input.schema.process import ENERGY_J_PER_TOKEN

_PCT = (
    ("p50", "median"),
    ("p90", "90th percentile"),
    ("p95", "95th percentile"),
    ("p99", "99th percentile"),
    ("mean", "mean"),
)
_LATENCIES = (
    ("ttft", "time to first token (arrival to first output token)"),
    ("ttfa", "time to first answer (reasoning models: the first token after the thinking part)"),
    ("itl", "inter-token latency (gap between consecutive output tokens)"),
    ("tpot", "time per output token, per request (decode time / output tokens)"),
    ("e2e", "end-to-end request latency"),
    ("queue", "time waiting in the queue before scheduling"),
    ("prefill", "prefill (prompt processing) time per request"),
    ("decode", "decode (generation) time per request"),
    ("load", "model load time per request (Ollama `load_duration`: a cold start)"),
)


_LENGTHS = (
    ("request_prompt_tokens", "prompt (input) tokens per finished request"),
    ("request_generation_tokens", "generated (output) tokens per finished request"),
    ("request_max_tokens", "`max_tokens` asked for per request (where the request set it)"),
)
_LENGTH_PCT = (("p50", "median"), ("p95", "95th percentile"), ("mean", "mean"))
_SGLANG_HIST = "SGLang: with `--collect-tokens-histogram`"
_LLAMACPP_EVALUATED = "llama.cpp log: the tokens it evaluated, a prefix reused from its cache left out"
_LENGTH_NOTES = {
    **{(p, label): _SGLANG_HIST for p, _ in _LENGTHS[:2] for label in ("p50", "p95")},
    **{(p, "mean"): "SGLang without that flag: token-counter delta / finished-request delta" for p, _ in _LENGTHS[:2]},
}
_LENGTH_NOTES.update(  # its `prompt eval` line: a chat's second turn shows only the new tokens
    {key: f"{text}; {_LLAMACPP_EVALUATED}" for key, text in _LENGTH_NOTES.items() if key[0] == _LENGTHS[0][0]}
)


def _interval_fields(kinds, pct, unit: str, suffix: str = "", notes=None) -> tuple[Field, ...]:
    """`<prefix>_<p50...><suffix>` of each histogram kind, over the interval from bucket deltas (as Grafana's)."""
    notes = notes or {}
    return tuple(
        Field(
            f"{prefix}_{label}{suffix}",
            unit,
            f"{what.capitalize()} {meaning} over the interval, from histogram bucket deltas "
            "(Prometheus `histogram_quantile` interpolation); absent when nothing finished.",
            servers=notes.get((prefix, label), ""),
        )
        for prefix, meaning in kinds
        for label, what in pct
    )


_SERVER_LOG_FIELDS = (
    Field(
        "client_error_ratio",
        "0-1",
        "Requests answered 4xx / all requests over the interval (the caller's mistakes; `error_ratio` counts 5xx).",
    ),
    Field(
        "model_loads_per_s",
        "loads/s",
        "Model loads (a runner started) per second over the interval.",
    ),
    Field(
        "model_load_seconds",
        "s",
        "How long the interval's last model load took (`llama runner started in N seconds`); absent without one.",
    ),
)
"""From a server's own log: what no histogram gives."""


SERVER = Measurement(
    "llm_server",
    "One model server target (one point per model it serves): health, load, token and request counters, "
    "rates and latency percentiles over the gather interval. Same name, same meaning on every server. Tag "
    "`server_version`: the server's own version (vLLM `/version`, SGLang `/get_server_info`, TGI `/info`, llama.cpp "
    "`/props` `build_info`, Ollama `/api/version`; asked on first contact, after an outage and every 10 minutes "
    "where it costs a request), absent until known, kept on its down points. Ollama and llama.cpp: requests/s, "
    "error ratios and the latency and length percentiles come from the server's own log (exact over the interval's "
    "requests), on a point of their own (tags `target`, `server_type`; Ollama also `api`: `generate` for "
    "generate/chat/completions, `embed` for embeddings, kept apart); llama.cpp's `e2e_*` is its `total time` "
    "(prompt + generation, without the wait for a slot).",
    ("server_type", "model", "target", "host", "server_version", "api"),
    (
        Field("up", "0/1", "1 when the server answered its metrics/API (0 also while a model loads).", type="int"),
        Field(
            "busy",
            "0/1",
            "1 when the server is alive but its metrics page timed out (llama.cpp blocks `/metrics` and `/slots` "
            "while decoding: `/health` answered). On every server's points; only llama.cpp sets it to 1.",
            type="int",
        ),
        Field(
            "loading",
            "0/1",
            '1 while the model loads (with `up=0`; llama.cpp: every path answers 503 "Loading model"). On every '
            "server's points; only llama.cpp sets it to 1.",
            type="int",
        ),
        Field("scrape_ms", "ms", "Time to read the target this gather."),
        Field("requests_running", "requests", "Requests being processed now.", servers="TGI: batch size"),
        Field("requests_waiting", "requests", "Requests queued (deferred) now."),
        Field(
            "kv_cache_usage_ratio",
            "0-1",
            "KV-cache use (averaged over engines/ranks).",
            servers="SGLang: `token_usage`; llama.cpp: older builds and forks",
        ),
        Field("slots_total", "slots", "Parallel slots (`/slots`, else `/props` `total_slots`).", type="int"),
        Field("slots_busy", "slots", "Slots processing a request.", type="int"),
        Field(
            "context_used_ratio",
            "0-1",
            "Context fill of the fullest busy slot (tokens in its context / `n_ctx`: `n_past`, or on builds without "
            "it `n_prompt_tokens`, which there counts the generated tokens too).",
        ),
        Field("models_loaded", "models", "Models loaded in memory (`/api/ps`).", type="int"),
        Field(
            "prompt_tokens_total",
            "tokens",
            "Prompt (input) tokens processed.",
            "counter",
            servers="TGI: sum of `tgi_request_input_length`; llama.cpp: without the tokens reused from the cache",
            type="int",
        ),
        Field(
            "generation_tokens_total",
            "tokens",
            "Generated (output) tokens.",
            "counter",
            servers="llama.cpp: `tokens_predicted_total`; TGI: sum of `tgi_request_generated_tokens`",
            type="int",
        ),
        Field(
            "requests_total",
            "requests",
            "Requests finished (vLLM: all finish reasons) or received (TGI).",
            "counter",
            type="int",
        ),
        Field(
            "request_errors_total",
            "requests",
            "Requests that failed.",
            "counter",
            servers="TGI: `tgi_request_failure`, all `err`; vLLM: finish reason `error`",
            type="int",
        ),
        Field(
            "requests_finished_*_total",
            "requests",
            "Requests finished per finish reason (`stop`, `length`, `abort`, ...).",
            "counter",
            type="int",
        ),
        Field("preemptions_total", "preemptions", "Requests preempted (KV cache full).", "counter", type="int"),
        Field("prompt_seconds_total", "s", "Time spent processing prompts.", "counter"),
        Field("generation_seconds_total", "s", "Time spent generating tokens.", "counter"),
        Field("decode_calls_total", "calls", "`llama_decode` calls.", "counter", type="int"),
        Field(
            "prompt_tokens_per_s",
            "tokens/s",
            "Prompt tokens per second of wall time over the interval "
            "(Prometheus `sum(increase())`: each series' own increase, a series that went down or is new counting from 0, "
            "then summed over engines/ranks; none on the first scrape). Every derived field follows the same rule "
            "(docs/servers.md).",
        ),
        Field("generation_tokens_per_s", "tokens/s", "Generated tokens per second of wall time over the interval."),
        Field("requests_per_s", "requests/s", "Requests per second over the interval."),
        Field("error_ratio", "0-1", "Failed / all requests over the interval."),
        Field(
            "prompt_speed_tokens_per_s",
            "tokens/s",
            "Prompt tokens per second of prompt-processing time over "
            "the interval (from counters, not the per-scrape gauge).",
        ),
        Field(
            "generation_speed_tokens_per_s",
            "tokens/s",
            "Tokens per second while generating over the interval (from counters, not the per-scrape gauge).",
        ),
        *_interval_fields(_LATENCIES, _PCT, "ms", "_ms"),
        *_interval_fields(_LENGTHS, _LENGTH_PCT, "tokens", notes=_LENGTH_NOTES),
        Field(
            "prefix_cache_queries_total",
            "tokens",
            "Prompt tokens looked up in the prefix (KV) cache.",
            "counter",
            servers="llama.cpp: `prompt_tokens_total` + `prompt_tokens_cached_total`",
            type="int",
        ),
        Field(
            "prefix_cache_hits_total",
            "tokens",
            "Prompt tokens found in the prefix cache (not computed again).",
            "counter",
            servers="SGLang: `cached_tokens_total`; llama.cpp: `prompt_tokens_cached_total`",
            type="int",
        ),
        Field(
            "prefix_cache_hit_ratio",
            "0-1",
            "Prefix-cache hits / queried tokens over the interval (from counter "
            "deltas; absent when nothing was looked up).",
            servers="SGLang: cached / prompt tokens, first scrape `cache_hit_rate`; vLLM V0 and SGLang without the "
            "counters: the server's own recent-window gauge",
        ),
        Field("spec_decode_drafts_total", "drafts", "Speculative-decoding draft steps.", "counter", type="int"),
        Field(
            "spec_decode_draft_tokens_total",
            "tokens",
            "Tokens proposed by the draft model/method.",
            "counter",
            type="int",
        ),
        Field(
            "spec_decode_accepted_tokens_total",
            "tokens",
            "Draft tokens the target model accepted.",
            "counter",
            type="int",
        ),
        Field(
            "spec_decode_acceptance_ratio",
            "0-1",
            "Accepted / draft tokens over the interval; absent when nothing was drafted.",
            servers="vLLM V0, SGLang: the server's own gauge where no counters",
        ),
        Field(
            "spec_decode_mean_accept_length",
            "tokens/step",
            "Tokens each draft step yields, the bonus token included (1 + accepted tokens / drafts over the interval).",
            servers="SGLang: `spec_accept_length`",
        ),
        # issue 25: llama.cpp depth
        Field(
            "busy_slots_per_decode",
            "slots",
            "Busy slots per `llama_decode` call (how many requests each batch step served), the server's own average "
            "since it started.",
        ),
        Field("lora_adapters_running", "adapters", "LoRA adapters with running requests now.", type="int"),
        Field("lora_adapters_waiting", "adapters", "LoRA adapters with waiting requests now.", type="int"),
        Field(
            "lora_adapters_max", "adapters", "LoRA adapters that fit on the GPU at once (`--max-loras`).", type="int"
        ),
        ENERGY_J_PER_TOKEN,
        *_SERVER_LOG_FIELDS,
        Field(
            "*",
            "",
            "`json` targets: the configured `json_fields` (counters also as `<name>_per_s`, `_total` "
            "dropped); `prometheus` targets with `measurement: llm_server`: the page's names, counters also as "
            "`<name>_per_s`, histograms as `<name>_p50`...`_mean` in the page's unit.",
            servers="json, prometheus",
        ),
    ),
)

MODEL_LOADED = Measurement(
    "llm_model_loaded",
    "A model an Ollama server holds in memory (`/api/ps`), or LM Studio has loaded (`/api/v0/models`), one point "
    "per model. Tags `quantization` (e.g. `Q4_K_M`, `4bit`) and `format` (`gguf`, `mlx`): LM Studio.",
    ("server_type", "model", "target", "host", "quantization", "format"),
    (
        Field("size_bytes", "bytes", "Memory the loaded model takes.", type="int"),
        Field("vram_bytes", "bytes", "Part of it in GPU memory.", type="int"),
        Field("gpu_offload_ratio", "0-1", "vram / size; below 1 means layers run on the CPU (slow)."),
        Field("context_length", "tokens", "Context length it was loaded with (newer Ollama).", type="int"),
        Field("seconds_until_unload", "s", "Until Ollama unloads it (`expires_at`; keep-alive)."),
        Field("max_context_length", "tokens", "Longest context the model supports.", servers="lmstudio", type="int"),
        Field(
            "loaded",
            "0/1",
            "1: LM Studio reports it loaded (only loaded models get a point).",
            servers="lmstudio",
            type="int",
        ),
    ),
)

MEASUREMENTS: tuple[Measurement, ...] = (SERVER, MODEL_LOADED)
