"""AMD GPUs through the amdgpu driver's sysfs: no ROCm, no root.

Files (Documentation/gpu/amdgpu/ in the kernel): `gpu_busy_percent`, `mem_busy_percent`,
`mem_info_vram_used`/`_total` (bytes), `pp_dpm_sclk`/`pp_dpm_mclk` (current level marked `*`), and hwmon
`power1_average` (older) or `power1_input` (RDNA3 and later) and `power1_cap` in µW, `temp1_input`
(`edge`), `temp2_input` (`junction`) in m°C, `energy1_input` in µJ (APUs and some boards).
"""

from __future__ import annotations

from typing import Any

from telegraf_llm_input.sources.gpu_sysfs import (
    AMD_VENDOR,
    DrmCard,
    hwmon_dirs,
    mib,
    micro,
    parse_dpm_current_mhz,
    read_int,
    read_text,
    temperatures_c,
)

VENDOR = "amd"
PCI_VENDOR = AMD_VENDOR


def card_tags(card: DrmCard) -> dict[str, str]:
    name = read_text(card.device / "product_name")
    return {"name": name} if name else {}


def read_card(card: DrmCard) -> dict[str, Any]:
    """`llm_gpu` fields of one amdgpu card, converted to our units; what it does not expose is absent."""
    dev = card.device
    fields: dict[str, Any] = {
        "utilization_gpu": read_int(dev / "gpu_busy_percent"),
        "utilization_memory": read_int(dev / "mem_busy_percent"),
    }
    total, used = read_int(dev / "mem_info_vram_total"), read_int(dev / "mem_info_vram_used")
    fields["memory_total_mib"] = mib(total)
    fields["memory_used_mib"] = mib(used)
    if total is not None and used is not None:
        fields["memory_free_mib"] = mib(total - used)
    for key, name in (("clocks_sm_mhz", "pp_dpm_sclk"), ("clocks_mem_mhz", "pp_dpm_mclk")):
        text = read_text(dev / name)
        fields[key] = parse_dpm_current_mhz(text) if text else None
    hwmons = hwmon_dirs(dev)
    if hwmons:  # amdgpu registers one hwmon per card
        hwmon = hwmons[0]
        power = read_int(hwmon / "power1_average")
        if power is None:
            power = read_int(hwmon / "power1_input")
        temps = temperatures_c(hwmon)
        fields["power_draw_w"] = micro(power)
        fields["power_limit_w"] = micro(read_int(hwmon / "power1_cap"))
        fields["energy_total_j"] = micro(read_int(hwmon / "energy1_input"))
        fields["temperature_gpu"] = temps.get("edge", temps.get("temp1"))
    return {k: v for k, v in fields.items() if v is not None}
