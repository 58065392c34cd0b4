from telegraf_llm_input.schema.base import Field, Measurement

HOST = Measurement(
    "llm_host",
    "The machine under the model: CPU, memory, swap, model disk.",
    ("host",),
    (
        Field(
            "cpu_percent",
            "%",
            "CPU busy since the previous gather, all cores; absent in the first gather (it would measure the "
            "agent's own start-up), as Telegraf's cpu input.",
        ),
        Field("load1", "", "1-minute load average."),
        Field("load5", "", "5-minute load average."),
        Field("load15", "", "15-minute load average."),
        Field("mem_total_bytes", "bytes", "Physical memory.", type="int"),
        Field("mem_used_bytes", "bytes", "Memory in use (total − available).", type="int"),
        Field("mem_available_bytes", "bytes", "Memory available without swapping.", type="int"),
        Field("mem_used_percent", "%", "Memory in use."),
        Field("swap_total_bytes", "bytes", "Swap size.", type="int"),
        Field("swap_used_bytes", "bytes", "Swap in use.", type="int"),
        Field("swap_used_percent", "%", "Swap in use."),
        Field(
            "swap_in_bytes_per_s",
            "bytes/s",
            "Swapped in since the previous gather (a model box that swaps decodes 10× slower).",
        ),
        Field("swap_out_bytes_per_s", "bytes/s", "Swapped out since the previous gather."),
        Field("memory_pressure_some_avg10", "%", "Share of the last 10 s some task waited for memory (Linux PSI)."),
        Field(
            "memory_pressure_level",
            "",
            "macOS memory pressure (`kern.memorystatus_vm_pressure_level`): 1 normal, 2 warning, 4 critical.",
            servers="macOS",
            type="int",
        ),
        Field("model_dir_free_bytes", "bytes", "Free space on the filesystem of `host.model_dir`.", type="int"),
        Field("model_dir_total_bytes", "bytes", "Size of that filesystem.", type="int"),
        Field("model_dir_used_percent", "%", "Use of that filesystem."),
    ),
)
