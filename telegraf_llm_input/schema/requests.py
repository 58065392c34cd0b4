from telegraf_llm_input.schema.base import Field, Measurement

LLM_REQUESTS = Measurement(
    "llm_requests",
    "One `logs:` entry's JSON request log, aggregated over one gather interval, per group (`group_by` tags). "
    "Counts are for the interval, not running totals; lines count in the interval they are read in. "
    "An interval without traffic still has `requests=0` (no percentiles). With `group_by`, a row with only "
    "the `log` tag carries `malformed_lines`. Percentiles: linear interpolation (numpy's default) over the "
    "interval's values; past 100,000 values per group, a log-bucket sketch within 1% relative error.",
    ("log", "<group_by keys>", "<entry tags>"),
    (
        Field("requests", "requests", "Requests logged in the interval.", type="int"),
        Field("errors", "requests", "Requests matching `error_when` (default: `status` not success/ok).", type="int"),
        Field("error_ratio", "0..1", "errors / requests; absent when there was no request."),
        Field(
            "requests_per_s",
            "req/s",
            "requests / seconds since the previous gather; absent when the interval began with unread backlog (the first "
            "gather, a gather after one cut short by `max_read_per_gather`): old lines are not this interval's traffic.",
        ),
        Field("latency_p50_ms", "ms", "Median request latency (`fields.latency_ms`, default key `duration_ms`)."),
        Field("latency_p95_ms", "ms", "95th percentile request latency."),
        Field("latency_p99_ms", "ms", "99th percentile request latency."),
        Field("latency_mean_ms", "ms", "Mean request latency."),
        Field("ttft_p95_ms", "ms", "95th percentile time to first token, when the log has it (`fields.ttft_ms`)."),
        Field("prompt_tokens", "tokens", "Prompt tokens of the interval's requests.", type="int"),
        Field("completion_tokens", "tokens", "Completion tokens of the interval's requests.", type="int"),
        Field(
            "completion_tokens_per_s",
            "tok/s",
            "completion_tokens / seconds since the previous gather (absent as `requests_per_s`).",
        ),
        Field(
            "malformed_lines",
            "lines",
            "Lines skipped in the interval: not JSON, not an object, or over 64 MiB.",
            type="int",
        ),
        Field(
            "grouped_as_other",
            "requests",
            "Requests in this row because a group_by value was past "
            "`max_groups` (tag value `other`); absent when none.",
            type="int",
        ),
    ),
)

MEASUREMENTS: tuple[Measurement, ...] = (LLM_REQUESTS,)
