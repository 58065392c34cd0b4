from telegraf_llm_input.schema.base import Field, Measurement

LLM_PROCESS = Measurement(
    "llm_process",
    "The model server's process (per local target): up, restarts, what it holds, where it listens.",
    ("target", "server_type", "process_name"),
    (
        Field("up", "0/1", "1 when the process was found; 0 when it is gone (then only `restarts_total`).", type="int"),
        Field("pid", "", "Process id of the server's main process.", type="int"),
        Field("cpu_percent", "%", "CPU since the previous gather, the process and its children (100 = one core)."),
        Field(
            "rss_bytes",
            "bytes",
            "Resident memory of the main process only (where Ollama and vLLM keep the model is a child: read "
            "`tree_rss_bytes`).",
            type="int",
        ),
        Field(
            "tree_rss_bytes",
            "bytes",
            "Resident memory of the main process and its children (Ollama's `ollama runner`, vLLM's EngineCore, "
            "workers), summed: what the server costs in RAM. Pages shared between them count in each (an upper "
            "bound); children are re-read every minute and when one appears on a GPU.",
            type="int",
        ),
        Field("tree_processes", "", "Processes summed into `tree_rss_bytes` (the main one included).", type="int"),
        Field("num_threads", "", "Threads of the main process.", type="int"),
        Field("num_fds", "", "Open file descriptors of the main process.", type="int"),
        Field("uptime_s", "s", "Seconds since the process started."),
        Field("restarts_total", "", "Times the pid changed since the agent started.", kind="counter", type="int"),
        Field(
            "gpu_memory_used_mib",
            "MiB",
            "GPU memory the process and its children hold, all GPUs (NVML; DRM fdinfo "
            "`drm-memory-vram`/`drm-resident-*` on AMD, Intel and other DRM drivers).",
        ),
        Field(
            "gpu_busy_percent",
            "%",
            "Time the GPU's busiest engine ran the process's work since the previous "
            "gather (DRM fdinfo `drm-engine-*`/`drm-cycles-*`; 100 = that engine fully busy).",
            servers="AMD, Intel, DRM drivers",
        ),
        Field("gpu_indices", "", "GPUs it holds memory on, e.g. `0,1` (NVML).", kind="string"),
        Field("listen_address", "", "Where it listens on the target's port, e.g. `127.0.0.1:8000`.", kind="string"),
        Field(
            "exposed",
            "0/1",
            "1 when it listens on a non-loopback address (0.0.0.0: reachable from the network).",
            type="int",
        ),
    ),
)

ENERGY_J_PER_TOKEN = Field(
    "energy_j_per_token",
    "J/token",
    "GPU energy of the target's GPUs (`gpus:` or those its process holds memory on) over the interval, divided by "
    "the tokens generated in it; absent when none were generated.",
    servers="with a GPU and `generation_tokens_total`",
)
"""A field of `llm_server` (documented in schema/server.py), added by the energy-per-token processor."""

MEASUREMENTS: tuple[Measurement, ...] = (LLM_PROCESS,)
