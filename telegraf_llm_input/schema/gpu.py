from telegraf_llm_input.schema.base import Field, Measurement

LLM_GPU = Measurement(
    "llm_gpu",
    "One GPU: NVIDIA (NVML in-process), AMD (amdgpu sysfs), Intel (i915/xe sysfs) or Apple Silicon (`ioreg`); "
    "same field names for every `vendor`. A field the GPU or its backend does not give is absent, not 0. `index`: "
    "NVML's index on NVIDIA, the DRM card number on AMD/Intel, the IOAccelerator's position on Apple. "
    "`gpu_cores`: Apple GPU core count.",
    ("index", "uuid", "name", "pci_bus_id", "vendor", "gpu_cores"),
    (
        Field("utilization_gpu", "%", "Time a kernel was running over the driver's last sample period.", type="int"),
        Field("utilization_memory", "%", "Time device memory was being read or written.", type="int"),
        Field("utilization_renderer", "%", "Renderer (fragment) utilisation.", servers="apple", type="int"),
        Field("utilization_tiler", "%", "Tiler (geometry) utilisation.", servers="apple", type="int"),
        Field("memory_total_mib", "MiB", "Device memory."),
        Field(
            "memory_used_mib", "MiB", "Device memory in use, by every process (another process taking VRAM shows here)."
        ),
        Field("memory_free_mib", "MiB", "Device memory free."),
        Field(
            "memory_allocated_mib",
            "MiB",
            'Memory the GPU driver has allocated (Apple "Alloc system memory"; '
            "unified memory, so `memory_total_mib` is the machine's memory).",
            servers="apple",
        ),
        Field("temperature_gpu", "°C", "Core temperature.", type="int"),
        Field("power_draw_w", "W", "Power draw."),
        Field("power_limit_w", "W", "Enforced power limit."),
        Field("energy_total_j", "J", "Energy used since the driver loaded (Volta and later).", kind="counter"),
        Field("clocks_sm_mhz", "MHz", "SM clock.", type="int"),
        Field("clocks_mem_mhz", "MHz", "Memory clock.", type="int"),
        Field("fan_speed", "%", "Fan speed (absent on passively cooled GPUs).", type="int"),
        Field("pstate", "", "Performance state, 0 (P0, fastest) to 15.", type="int"),
        Field("throttle_idle", "0/1", "Clocks low because nothing runs.", type="int"),
        Field("throttle_power_cap", "0/1", "Clocks held down by the power limit (software power cap).", type="int"),
        Field("throttle_hw_slowdown", "0/1", "Hardware slowdown (overheat, power-supply signal).", type="int"),
        Field("throttle_sync_boost", "0/1", "Held to the clocks of GPUs in its sync-boost group.", type="int"),
        Field("throttle_thermal", "0/1", "Thermal slowdown, software or hardware.", type="int"),
        Field("throttle_power_brake", "0/1", "Hardware power brake (external power-brake signal).", type="int"),
        Field(
            "ecc_uncorrected_volatile",
            "errors",
            "Uncorrected ECC errors since the driver loaded.",
            kind="counter",
            type="int",
        ),
        Field(
            "ecc_corrected_volatile",
            "errors",
            "Corrected ECC errors since the driver loaded.",
            kind="counter",
            type="int",
        ),
        Field(
            "retired_or_remapped_rows_pending",
            "0/1",
            "1 when a row remap (or page retirement) waits for a GPU reset.",
            type="int",
        ),
        Field("pcie_tx_kib_s", "KiB/s", "PCIe transmit throughput (20 ms sample).", type="int"),
        Field("pcie_rx_kib_s", "KiB/s", "PCIe receive throughput (20 ms sample).", type="int"),
        Field("encoder_util", "%", "Video encoder use.", type="int"),
        Field("decoder_util", "%", "Video decoder use.", type="int"),
        Field(
            "xid_errors_total",
            "errors",
            "Critical XID errors seen since the agent started (NVML events).",
            kind="counter",
            type="int",
        ),
        Field(
            "xid_last", "", "Code of the last XID error (e.g. 79: fallen off the bus, 48: double-bit ECC).", type="int"
        ),
        Field(
            "gpu_lost",
            "0/1",
            "1 when NVML reports the GPU lost (needs a reset or reboot); then no other field.",
            type="int",
        ),
    ),
)

NVIDIA_SMI = Measurement(
    "nvidia_smi",
    "With `gpu.nvidia_smi_compat: true`: the same readings under Telegraf inputs.nvidia_smi's names, tags and "
    "integer types, so its dashboards keep working.",
    ("index", "name", "uuid", "pstate", "compute_mode"),
    (
        Field("driver_version", "", "NVIDIA driver version.", kind="string"),
        Field("cuda_version", "", "CUDA version the driver supports.", kind="string"),
        Field("fan_speed", "%", "Fan speed.", type="int"),
        Field("memory_total", "MiB", "Device memory.", type="int"),
        Field("memory_used", "MiB", "Device memory in use.", type="int"),
        Field("memory_free", "MiB", "Device memory free.", type="int"),
        Field("temperature_gpu", "°C", "Core temperature.", type="int"),
        Field("utilization_gpu", "%", "GPU utilisation.", type="int"),
        Field("utilization_memory", "%", "Memory utilisation.", type="int"),
        Field("utilization_encoder", "%", "Video encoder use.", type="int"),
        Field("utilization_decoder", "%", "Video decoder use.", type="int"),
        Field("pcie_link_gen_current", "", "Current PCIe generation.", type="int"),
        Field("pcie_link_width_current", "lanes", "Current PCIe link width.", type="int"),
        Field("clocks_current_graphics", "MHz", "Graphics clock.", type="int"),
        Field("clocks_current_sm", "MHz", "SM clock.", type="int"),
        Field("clocks_current_memory", "MHz", "Memory clock.", type="int"),
        Field("clocks_current_video", "MHz", "Video clock.", type="int"),
        Field("power_draw", "W", "Power draw."),
    ),
)

MEASUREMENTS: tuple[Measurement, ...] = (LLM_GPU, NVIDIA_SMI)
