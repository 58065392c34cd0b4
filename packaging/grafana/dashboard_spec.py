"""What the dashboards and alerts show: rows of panels and a list of alerts, as data.

Every query names a measurement and a field of the documented schema (telegraf_llm_input/schema); the
renderers in generate.py turn this one description into InfluxQL and PromQL dashboards, Grafana alert
provisioning and Prometheus rules. `servers` on a panel says which server types it has data for: the
dashboard test (tests/packaging/test_dashboards_run.py) checks each of them returns a series.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegraf_llm_input.servertypes import TYPES

S = "llm_server"
P = "llm_probe"
G = "llm_gpu"
ML = "llm_model_loaded"
PROC = "llm_process"
REQ = "llm_requests"
AG = "llm_agent"

AB_TAG = "$ab_tag"
"""The request log's A/B tag (a dashboard variable, default `prompt_version`): one series per value."""

SERIES_BY: dict[str, tuple[str, ...]] = {
    S: ("host", "target", "model", "api"),
    ML: ("host", "target", "model"),
    P: ("host", "target", "model"),
    PROC: ("host", "target"),
    G: ("host", "index"),
    "llm_host": ("host",),
    REQ: ("host", "log", AB_TAG),
    AG: ("host",),
}
"""The tags that tell one series from another: every panel keeps them apart and names them in the legend.
`api` (Ollama's server log: `generate`, `embed`) is absent everywhere else."""
LOG_SERVERS = ("llamacpp", "ollama")
"""Servers whose requests/s and latency come from their own log (sources/serverlog.py)."""

ALL_SERVERS: tuple[str, ...] = TYPES
"""Every server type (the registry, telegraf_llm_input/servertypes.py): each gives `up` and `scrape_ms`."""


@dataclass(frozen=True)
class Q:
    """One series family in a panel: a field of a measurement, one series per `by` tags.

    Counters are shown as per-second rates on both datasources. `total_by`: the per-series values summed
    by these tags (one line per host in the fleet row). `where`: extra (tag, regex) filters.
    """

    measurement: str
    field: str
    by: tuple[str, ...] | None = None
    agg: str = "mean"  # mean | max | min | sum | count
    label: str = ""
    """Legend prefix: the field name when empty (Prometheus: its base-unit name)."""
    total_by: tuple[str, ...] | None = None
    where: tuple[tuple[str, str], ...] = ()

    @property
    def series_by(self) -> tuple[str, ...]:
        return self.by if self.by is not None else SERIES_BY[self.measurement]


UPDOWN = ((0, "down", "red"), (1, "up", "green"))
FLAG = ((0, "no", "green"), (1, "yes", "orange"))
BAD_FLAG = ((0, "no", "green"), (1, "yes", "red"))


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Q, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | bars | heatmap | state
    width: int = 12
    description: str = ""
    max: float | None = None
    servers: tuple[str, ...] = ()
    """Server types (the `server_type` tag) the panel has data for; empty: not per server."""
    mappings: tuple[tuple[int, str, str], ...] = ()
    """State timelines: (value, text, colour)."""


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]
    collapsed: bool = False
    description: str = ""


LATENCY_SERVERS = ("vllm", "sglang", "proxy")
ROWS: tuple[Row, ...] = (
    Row(
        "Fleet: one line per host",
        (
            Panel(
                "Targets up per host",
                (Q(S, "up", by=("host", "target", "model"), agg="min", label="up targets", total_by=("host",)),),
                width=8,
                servers=ALL_SERVERS,
                description="Targets answering on each host. A drop = a server on that host went down.",
            ),
            Panel(
                "Generated tokens per second per host",
                (Q(S, "generation_tokens_per_s", label="tokens/s", total_by=("host",)),),
                width=8,
                servers=("llamacpp", "vllm", "sglang", "tgi", "proxy"),
            ),
            Panel(
                "GPU utilisation per host",
                (Q(G, "utilization_gpu", by=("host",), label="gpu util"),),
                unit="percent",
                width=8,
                description="Mean over the host's GPUs.",
            ),
        ),
    ),
    Row(
        "Overview",
        (
            Panel(
                "Up",
                (Q(S, "up", by=("host", "target"), agg="min"),),
                kind="state",
                width=24,
                servers=ALL_SERVERS,
                mappings=UPDOWN,
                description="Per host and target: down (red) when the server did not answer.",
            ),
            Panel(
                "Requests running / waiting",
                (Q(S, "requests_running", label="running"), Q(S, "requests_waiting", label="waiting")),
                servers=("llamacpp", "vllm", "sglang", "tgi", "proxy"),
                description="Waiting that keeps rising = overload.",
            ),
            Panel(
                "Requests per second",
                (Q(S, "requests_per_s"),),
                unit="reqps",
                servers=("vllm", "sglang", "tgi", *LOG_SERVERS, "proxy"),
                description="llama.cpp and Ollama: from the server's own log (Ollama: per API, generate and embed).",
            ),
            Panel(
                "Tokens per second",
                (Q(S, "prompt_tokens_per_s", label="prompt"), Q(S, "generation_tokens_per_s", label="generation")),
                servers=("llamacpp", "vllm", "sglang", "tgi", "proxy"),
                description="Tokens per second of wall time.",
            ),
            Panel(
                "Scrape time",
                (Q(S, "scrape_ms", label="scrape"),),
                unit="ms",
                servers=ALL_SERVERS,
                description="How long reading the server took: rising = the server is struggling.",
            ),
        ),
    ),
    Row(
        "Errors",
        (
            Panel(
                "Probe success rate",
                (Q(P, "success", label="success"),),
                unit="percentunit",
                max=1,
                servers=("llamacpp", "ollama", "tgi"),
                description="Share of synthetic requests that streamed an answer.",
            ),
            Panel(
                "Failed probes by error class",
                (
                    Q(
                        P,
                        "success",
                        by=("host", "target", "model", "error"),
                        agg="count",
                        label="failed",
                        where=(("error", ".+"),),
                    ),
                ),
                kind="bars",
                servers=("tgi",),
                description="connect, timeout, http_4xx, http_5xx, bad_stream, empty.",
            ),
            Panel(
                "Server request errors per second",
                (Q(S, "request_errors_total", label="errors"),),
                unit="reqps",
                servers=("vllm", "tgi", "proxy"),
            ),
            Panel(
                "Error ratio",
                (Q(S, "error_ratio", label="5xx"), Q(S, "client_error_ratio", label="4xx")),
                unit="percentunit",
                servers=("vllm", "tgi", "ollama", "proxy"),
                description="Failed / all requests. Ollama (its log): 5xx apart from 4xx (the caller's mistakes).",
            ),
            Panel(
                "Truncated and aborted answers per second",
                (
                    Q(S, "requests_finished_length_total", label="length (truncated)"),
                    Q(S, "requests_finished_abort_total", label="abort"),
                ),
                unit="reqps",
                servers=("vllm",),
                description="length: the answer hit max_tokens. abort: the client went away.",
            ),
        ),
    ),
    Row(
        "Latency (server)",
        (
            Panel(
                "Time to first token",
                (Q(S, "ttft_p50_ms", label="p50"), Q(S, "ttft_p95_ms", label="p95"), Q(S, "ttft_p99_ms", label="p99")),
                unit="ms",
                servers=LATENCY_SERVERS,
                description="Includes queueing and prefill: read it with the prompt length.",
            ),
            Panel(
                "Time per output token / inter-token latency",
                (Q(S, "tpot_p95_ms", label="tpot p95"), Q(S, "itl_p95_ms", label="itl p95")),
                unit="ms",
                servers=("vllm", "llamacpp", "proxy"),
            ),
            Panel(
                "End-to-end latency",
                (Q(S, "e2e_p50_ms", label="p50"), Q(S, "e2e_p95_ms", label="p95"), Q(S, "e2e_p99_ms", label="p99")),
                unit="ms",
                servers=("vllm", "tgi", *LOG_SERVERS, "proxy"),
                description="llama.cpp: its log's `total time` (prompt + generation, not the wait for a slot).",
            ),
            Panel(
                "Queue and prefill time (p95)",
                (Q(S, "queue_p95_ms", label="queue p95"), Q(S, "prefill_p95_ms", label="prefill p95")),
                unit="ms",
                servers=("vllm", "llamacpp"),
            ),
            Panel(
                "Request length (tokens per request)",
                (
                    Q(S, "request_prompt_tokens_p50", label="prompt p50"),
                    Q(S, "request_prompt_tokens_p95", label="prompt p95"),
                    Q(S, "request_generation_tokens_p50", label="generated p50"),
                    Q(S, "request_generation_tokens_p95", label="generated p95"),
                ),
                servers=("vllm", "tgi", "llamacpp", "proxy"),
                description="Finished requests over the interval. Read time to first token with the prompt length.",
            ),
        ),
    ),
    Row(
        "Probe (what a client gets)",
        (
            Panel(
                "First token, first answer, end to end",
                (Q(P, "ttft_ms", label="ttft"), Q(P, "ttfa_ms", label="ttfa"), Q(P, "e2e_ms", label="e2e")),
                unit="ms",
                servers=("llamacpp", "ollama"),
                description="Reasoning models: the first answer comes after the thinking.",
            ),
            Panel("Time per output token", (Q(P, "tpot_ms", label="tpot"),), unit="ms", servers=("llamacpp", "ollama")),
            Panel(
                "Decode speed",
                (Q(P, "tokens_per_s", label="client"), Q(P, "server_decode_tokens_per_s", label="server")),
                servers=("llamacpp", "ollama"),
                description="tokens/s. < 10 feels like dial-up, >= 20 reads fluently.",
            ),
        ),
    ),
    Row(
        "Ollama / LM Studio",
        (
            Panel(
                "Ollama requests per second by API",
                (Q(S, "requests_per_s", label="requests"),),
                unit="reqps",
                servers=("ollama",),
                description="From its server log: generate/chat/completions apart from embeddings; the agent's "
                "scrapes and the probe's requests are left out.",
            ),
            Panel(
                "Ollama end-to-end latency by API",
                (Q(S, "e2e_p50_ms", label="p50"), Q(S, "e2e_p95_ms", label="p95")),
                unit="ms",
                servers=("ollama",),
                description="From its server log: the request's whole time in Ollama (a cold load included).",
            ),
            Panel(
                "Models loaded",
                (Q(S, "models_loaded", label="models"),),
                servers=("ollama", "lmstudio"),
                description="Models in memory (Ollama /api/ps, LM Studio /api/v0/models).",
            ),
            Panel(
                "GPU offload ratio",
                (Q(ML, "gpu_offload_ratio", label="offload"),),
                unit="percentunit",
                max=1,
                servers=("ollama",),
                description="Below 100%: layers run on the CPU (several times slower).",
            ),
            Panel(
                "Model memory (VRAM and total)",
                (Q(ML, "vram_bytes", label="vram"), Q(ML, "size_bytes", label="size")),
                unit="bytes",
                servers=("ollama",),
            ),
            Panel(
                "Time until unload",
                (Q(ML, "seconds_until_unload", label="until unload"),),
                unit="s",
                servers=("ollama",),
                description="keep_alive left; at 0 the next request pays a cold load.",
            ),
            Panel(
                "Model loads",
                (Q(S, "model_loads_per_s", label="loads/s"),),
                unit="ops",
                servers=("ollama",),
                description="Runner starts (its log): a model loaded, perhaps evicting another. Rising = VRAM thrash.",
            ),
            Panel(
                "Model load time",
                (Q(S, "model_load_seconds", agg="max", label="load"),),
                unit="s",
                servers=("ollama",),
                description="How long the last load took (its log: `llama runner started in N seconds`).",
            ),
            Panel(
                "Decode speed (probe)",
                (Q(P, "tokens_per_s", label="tokens/s"),),
                servers=("ollama",),
                description="What a client gets from the loaded model, tokens/s.",
            ),
            Panel(
                "Cold-load time (probe)",
                (Q(P, "load_ms", agg="max", label="load"),),
                unit="ms",
                servers=("ollama",),
                description="Time the probe's request waited for the model to load.",
            ),
        ),
    ),
    Row(
        "llama.cpp",
        (
            Panel(
                "Slots busy / total",
                (Q(S, "slots_busy", label="busy"), Q(S, "slots_total", label="total")),
                servers=("llamacpp",),
                description="All slots busy = new requests wait.",
            ),
            Panel(
                "Context fill (fullest busy slot)",
                (Q(S, "context_used_ratio", agg="max", label="context"),),
                unit="percentunit",
                max=1,
                servers=("llamacpp",),
                description="Near 1: the conversation is about to be cut or shifted.",
            ),
            Panel(
                "Generation and prompt speed",
                (
                    Q(S, "generation_speed_tokens_per_s", label="generation"),
                    Q(S, "prompt_speed_tokens_per_s", label="prompt"),
                ),
                servers=("llamacpp",),
                description="tokens/s while working (not per wall second).",
            ),
            Panel(
                "Busy / loading",
                (Q(S, "busy", by=("host", "target"), agg="max"), Q(S, "loading", by=("host", "target"), agg="max")),
                kind="state",
                servers=("llamacpp",),
                mappings=FLAG,
                description="busy: alive but /metrics timed out (decoding). loading: the model is loading.",
            ),
        ),
        collapsed=True,
    ),
    Row(
        "vLLM / SGLang",
        (
            Panel(
                "KV cache usage",
                (Q(S, "kv_cache_usage_ratio", agg="max", label="kv cache"),),
                unit="percentunit",
                max=1,
                servers=("vllm", "sglang"),
            ),
            Panel("Queue (requests waiting)", (Q(S, "requests_waiting", label="waiting"),), servers=("vllm", "sglang")),
            Panel(
                "Preemptions per second",
                (Q(S, "preemptions_total", label="preemptions"),),
                unit="ops",
                servers=("vllm",),
                description="Requests pushed out of the KV cache: it is too small for the load.",
            ),
            Panel(
                "Finish reasons per second",
                tuple(Q(S, f"requests_finished_{r}_total", label=r) for r in ("stop", "length", "abort", "error")),
                unit="reqps",
                servers=("vllm",),
            ),
            Panel(
                "Prefix cache hit ratio",
                (Q(S, "prefix_cache_hit_ratio", label="hit ratio"),),
                unit="percentunit",
                max=1,
                servers=("vllm", "sglang"),
                description="Prompt tokens served from the prefix (KV) cache: higher = less prefill work per request.",
            ),
        ),
        collapsed=True,
    ),
    Row(
        "GPU",
        (
            Panel("GPU utilisation", (Q(G, "utilization_gpu"),), kind="heatmap", unit="percent", width=24),
            Panel(
                "GPU memory used / total",
                (Q(G, "memory_used_mib", label="used"), Q(G, "memory_total_mib", label="total")),
                unit="mbytes",
            ),
            Panel(
                "Power draw", (Q(G, "power_draw_w", label="power"), Q(G, "power_limit_w", label="limit")), unit="watt"
            ),
            Panel("Temperature", (Q(G, "temperature_gpu", label="temperature"),), unit="celsius"),
            Panel(
                "Throttle reasons",
                (
                    Q(G, "throttle_power_cap", agg="max", label="power cap"),
                    Q(G, "throttle_hw_slowdown", agg="max", label="hw slowdown"),
                    Q(G, "throttle_thermal", agg="max", label="thermal"),
                ),
                kind="state",
                mappings=BAD_FLAG,
            ),
            Panel(
                "Energy per generated token",
                (Q(S, "energy_j_per_token", label="energy"),),
                unit="joule",
                servers=("vllm",),
            ),
            Panel("XID errors per second", (Q(G, "xid_errors_total", label="xid"),), unit="ops"),
        ),
    ),
    Row(
        "Model server process",
        (
            Panel("CPU", (Q(PROC, "cpu_percent", label="cpu"),), unit="percent", servers=("llamacpp",)),
            Panel("Resident memory", (Q(PROC, "rss_bytes", label="rss"),), unit="bytes", servers=("llamacpp",)),
            Panel(
                "GPU memory held",
                (Q(PROC, "gpu_memory_used_mib", label="gpu memory"),),
                unit="mbytes",
                servers=("vllm", "ollama"),
                description="What the server's processes hold on the GPUs (NVML).",
            ),
            Panel(
                "Restarts per second", (Q(PROC, "restarts_total", label="restarts"),), unit="ops", servers=("llamacpp",)
            ),
            Panel(
                "Exposed on the network",
                (Q(PROC, "exposed", agg="max"),),
                kind="state",
                mappings=BAD_FLAG,
                servers=("llamacpp",),
                description="yes: the server listens on a non-loopback address.",
            ),
            Panel(
                "Host swap and memory pressure",
                (
                    Q("llm_host", "swap_used_percent", label="swap"),
                    Q("llm_host", "memory_pressure_some_avg10", label="pressure"),
                ),
                unit="percent",
                description="Swapping cuts tokens/s by an order of magnitude.",
            ),
        ),
    ),
    Row(
        "Request log (A/B)",
        (
            Panel(
                "Error ratio per group",
                (Q(REQ, "error_ratio"),),
                unit="percentunit",
                description="One series per value of the A/B tag (variable ab_tag, e.g. prompt_version).",
            ),
            Panel("p95 latency per group", (Q(REQ, "latency_p95_ms", label="p95"),), unit="ms"),
            Panel("Requests per second per group", (Q(REQ, "requests_per_s"),), unit="reqps"),
            Panel("Completion tokens per second per group", (Q(REQ, "completion_tokens_per_s", label="tokens/s"),)),
        ),
    ),
    Row(
        "Agent",
        (
            Panel("Gather time", (Q(AG, "gather_ms", label="gather"),), unit="ms"),
            Panel("Per-source time", (Q(AG, "duration_ms", by=("host", "source"), label="source"),), unit="ms"),
            Panel("Source errors per second", (Q(AG, "errors", by=("host", "source"), label="errors"),), unit="ops"),
            Panel(
                "Output buffer",
                (
                    Q(AG, "output_buffered_points", agg="max", label="buffered"),
                    Q(AG, "output_dropped_points", label="dropped/s"),
                ),
                description="Points waiting for the database, and points dropped per second (buffer full).",
            ),
        ),
    ),
)


PROMETHEUS_JOB = "telegraf-llm-input"
"""The scrape job name the agent rules expect (`job_name:` in prometheus.yml)."""


@dataclass(frozen=True)
class Alert:
    uid: str
    title: str
    measurement: str
    field: str
    op: str  # > | < | ==
    threshold: float
    for_: str
    severity: str
    summary: str
    by: tuple[str, ...] = ("host", "target")
    mode: str = "value"
    """value: the latest value; mean: its mean over `window` (no flapping on one noisy interval);
    increase: the counter grew within `window` (only while the series is still reported);
    growing: never below the threshold and trending up over `window`; silent: the agent reports nothing."""
    window: str = "10m"
    divide_by: str | None = None
    """A second field of the same measurement: alert on field / divide_by."""
    no_data_alerts: bool = False
    """Grafana: no data at all is itself the alarm (noDataState: Alerting)."""


ALERTS: tuple[Alert, ...] = (
    # Grafana: the 3-minute moving count of points; a live agent gathering every minute reads >= 2/3.
    Alert(
        "llm-agent-silent",
        "Agent silent",
        AG,
        "gathers",
        "<",
        0.2,
        "2m",
        "critical",
        "The agent on {{ $labels.host }} stopped reporting (dead, hung or unreachable).",
        by=("host",),
        mode="silent",
        window="5m",
        no_data_alerts=True,
    ),
    Alert(
        "llm-target-down",
        "Model server down",
        S,
        "up",
        "<",
        1,
        "2m",
        "critical",
        "{{ $labels.target }} on {{ $labels.host }} does not answer.",
        no_data_alerts=True,
    ),
    Alert(
        "llm-target-busy",
        "Model server busy for a long time",
        S,
        "busy",
        ">",
        0.9,
        "5m",
        "warning",
        "{{ $labels.target }} on {{ $labels.host }} is alive but its metrics page timed out at over 90% of the "
        "gathers of the last 10 minutes.",
        mode="mean",
        window="10m",
    ),
    Alert(
        "llm-ttft-p95-high",
        "TTFT p95 above 10 s",
        S,
        "ttft_p95_ms",
        ">",
        10000,
        "5m",
        "warning",
        "Time to first token p95 on {{ $labels.target }} ({{ $labels.host }}) averaged above 10 s for 5 minutes.",
        mode="mean",
        window="5m",
    ),
    Alert(
        "llm-error-ratio-high",
        "Error ratio above 5%",
        S,
        "error_ratio",
        ">",
        0.05,
        "5m",
        "warning",
        "More than 5% of requests to {{ $labels.target }} ({{ $labels.host }}) failed over 5 minutes.",
        mode="mean",
        window="5m",
    ),
    Alert(
        "llm-queue-growing",
        "Requests waiting keep growing",
        S,
        "requests_waiting",
        ">",
        0,
        "5m",
        "warning",
        "The queue on {{ $labels.target }} ({{ $labels.host }}) never emptied and grew over 10 minutes: overload.",
        mode="growing",
        window="10m",
    ),
    Alert(
        "llm-kv-cache-full",
        "KV cache above 90%",
        S,
        "kv_cache_usage_ratio",
        ">",
        0.9,
        "5m",
        "warning",
        "KV cache of {{ $labels.target }} ({{ $labels.host }}) averaged above 90%: requests will queue or be "
        "preempted.",
        mode="mean",
        window="5m",
    ),
    Alert(
        "llm-gpu-memory-full",
        "GPU memory above 95%",
        G,
        "memory_used_mib",
        ">",
        0.95,
        "5m",
        "warning",
        "GPU {{ $labels.index }} on {{ $labels.host }} is above 95% memory.",
        by=("host", "index"),
        divide_by="memory_total_mib",
    ),
    Alert(
        "llm-gpu-throttling",
        "GPU throttling (hardware slowdown)",
        G,
        "throttle_hw_slowdown",
        ">",
        0.5,
        "5m",
        "warning",
        "GPU {{ $labels.index }} on {{ $labels.host }} was slowed down by hardware most of the last 5 minutes.",
        by=("host", "index"),
        mode="mean",
        window="5m",
    ),
    Alert(
        "llm-gpu-thermal",
        "GPU thermal throttling",
        G,
        "throttle_thermal",
        ">",
        0.5,
        "5m",
        "warning",
        "GPU {{ $labels.index }} on {{ $labels.host }} was thermally throttled most of the last 5 minutes.",
        by=("host", "index"),
        mode="mean",
        window="5m",
    ),
    Alert(
        "llm-gpu-xid",
        "GPU XID errors",
        G,
        "xid_errors_total",
        ">",
        0,
        "0m",
        "critical",
        "GPU {{ $labels.index }} on {{ $labels.host }} reported XID errors.",
        by=("host", "index"),
        mode="increase",
    ),
    Alert(
        "llm-process-restarted",
        "Model server process restarted",
        PROC,
        "restarts_total",
        ">",
        0,
        "0m",
        "warning",
        "The process of {{ $labels.target }} on {{ $labels.host }} restarted.",
        mode="increase",
        window="15m",
    ),
    Alert(
        "llm-server-exposed",
        "Model server exposed on the network",
        PROC,
        "exposed",
        "==",
        1,
        "1m",
        "critical",
        "{{ $labels.target }} on {{ $labels.host }} listens on a non-loopback address: it can be found and abused.",
    ),
    Alert(
        "llm-agent-dropping",
        "Agent output buffer dropping points",
        AG,
        "output_dropped_points",
        ">",
        0,
        "0m",
        "warning",
        "The agent on {{ $labels.host }} dropped buffered points: the database was away too long.",
        by=("host",),
        mode="increase",
        window="15m",
    ),
)
