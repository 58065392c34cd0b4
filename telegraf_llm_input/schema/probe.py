from telegraf_llm_input.schema.base import Field, Measurement

PROBE = Measurement(
    "llm_probe",
    "A synthetic streaming request sent every `probe.every` (off by default): what a client of the server "
    "actually gets. One point per probe, timestamped when it started. Tag `error` (only on failure): `connect`, "
    "`timeout`, `http_4xx`, `http_5xx`, `bad_stream` (cut, malformed or error chunk, ended unfinished), `empty` "
    "(no text). Tag `output_tokens_source`: `usage` (the server's usage object), `server` (Ollama `eval_count`, "
    "llama.cpp `tokens_predicted`) or `chunks` (counted chunks: an estimate). Tag `skip_reason` (only when "
    "a probe was not sent, on Ollama and LM Studio, which load the model a request names): `no_model_loaded`, "
    "`model_idle` (Ollama: no user request since the last probe, so a probe would keep the model loaded), `no_model_list` (the server's list "
    "of loaded models could not be read), `no_generating_model` (Ollama: every loaded model only makes embeddings, "
    "its `/api/show` `capabilities` lack `completion`; a chat would get a 400).",
    ("host", "target", "server_type", "model", "api", "error", "output_tokens_source", "skip_reason"),
    (
        Field("success", "0/1", "1 when the stream completed with generated text.", type="int"),
        Field("http_status", "", "HTTP status of the probe request (absent when no response came).", type="int"),
        Field(
            "ttft_ms",
            "ms",
            "Request sent (its body written to the connection) → first chunk with any generated text (answer, reasoning or tool "
            "call); role-only and empty chunks do not count. Includes queueing and prefill.",
        ),
        Field(
            "ttfa_ms",
            "ms",
            "Request sent → first non-blank answer text (after the reasoning: "
            "`delta.reasoning`/`reasoning_content`/Ollama `thinking`, or after `</think>`). Absent when the "
            "answer never started within `max_tokens`.",
        ),
        Field("reasoning_ms", "ms", "ttfa − ttft, when the model reasoned first."),
        Field("reasoning", "0/1", "1 when reasoning text was seen (separate field or `<think>` tags).", type="int"),
        Field("e2e_ms", "ms", "Request sent → end of the stream (or the failure)."),
        Field(
            "output_tokens", "tokens", "Generated tokens, from the source named by `output_tokens_source`.", type="int"
        ),
        Field(
            "reasoning_tokens",
            "tokens",
            "Reasoning tokens, when the server reports `usage.completion_tokens_details.reasoning_tokens`.",
            type="int",
        ),
        Field(
            "prompt_tokens",
            "tokens",
            "Prompt length as the server counted it (the prompt text itself is never emitted or logged).",
            type="int",
        ),
        Field("tpot_ms", "ms", "Time per output token after the first: (t_last − t_first) / (output_tokens − 1)."),
        Field(
            "tokens_per_s",
            "tokens/s",
            "Decode rate seen by the client: (output_tokens − 1) over the time from "
            "the first to the last token chunk (= 1000 / tpot_ms).",
        ),
        Field(
            "load_ms",
            "ms",
            "Time the server spent loading the model for this request (a cold load after an idle unload shows here).",
            servers="ollama",
        ),
        Field(
            "server_prefill_ms",
            "ms",
            "Server-side prompt processing time (Ollama `prompt_eval_duration`, "
            "llama.cpp `timings.prompt_ms`, LM Studio `stats.time_to_first_token`).",
            servers="ollama, llamacpp, lmstudio",
        ),
        Field(
            "server_decode_tokens_per_s",
            "tokens/s",
            "Server-side decode rate (Ollama `eval_count` / "
            "`eval_duration`, llama.cpp `timings.predicted_per_second`, LM Studio `stats.tokens_per_second`).",
            servers="ollama, llamacpp, lmstudio",
        ),
        Field(
            "cache_tokens",
            "tokens",
            "Prompt tokens reused from the KV cache (`timings.cache_n`).",
            servers="llamacpp",
            type="int",
        ),
        Field(
            "connect_ms",
            "ms",
            "TCP (and TLS) set-up, only when the probe had to open a new connection; not part of ttft_ms.",
        ),
        Field("chunks", "", "JSON chunks received in the stream.", type="int"),
        Field(
            "skipped",
            "0/1",
            "1 when the probe was not sent, so as not to load a model or keep one loaded (why: tag `skip_reason`); "
            "then the point's only field.",
            servers="ollama, lmstudio",
            type="int",
        ),
    ),
)

MEASUREMENTS: tuple[Measurement, ...] = (PROBE,)
