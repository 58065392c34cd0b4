"""AMD GPUs through the amdgpu driver's sysfs: no ROCm, no root.

Files (Documentation/gpu/amdgpu/ in the kernel): `gpu_busy_percent`, `mem_busy_percent`,
`mem_info_vram_used`/`_total` (bytes), `pp_dpm_sclk`/`pp_dpm_mclk` (current level marked `*`), and hwmon
`power1_average` (older) or `power1_input` (RDNA3 and later) and `power1_cap` in µW, `temp1_input`
(`edge`), `temp2_input` (`junction`) in m°C, `energy1_input` in µJ (APUs and some boards).
"""

from __future__ import annotations

from telegraf_llm_input.sources.gpu_sysfs import (
    AMD_VENDOR,
    DrmCard,
    SysfsField,
    attr,
    difference,
    dpm,
    first,
    mib,
    micro,
    read_text,
    temperature,
)

VENDOR = "amd"
PCI_VENDOR = AMD_VENDOR
HWMON_NAMES = None
"""amdgpu registers one hwmon per card."""

FIELDS: tuple[SysfsField, ...] = (
    SysfsField("utilization_gpu", attr("device/gpu_busy_percent")),
    SysfsField("utilization_memory", attr("device/mem_busy_percent")),
    SysfsField("memory_total_mib", attr("device/mem_info_vram_total"), mib),
    SysfsField("memory_used_mib", attr("device/mem_info_vram_used"), mib),
    SysfsField(
        "memory_free_mib", difference(attr("device/mem_info_vram_total"), attr("device/mem_info_vram_used")), mib
    ),
    SysfsField("clocks_sm_mhz", dpm("pp_dpm_sclk")),
    SysfsField("clocks_mem_mhz", dpm("pp_dpm_mclk")),
    SysfsField("power_draw_w", first(attr("hwmon/power1_average"), attr("hwmon/power1_input")), micro),
    SysfsField("power_limit_w", attr("hwmon/power1_cap"), micro),
    SysfsField("energy_total_j", attr("hwmon/energy1_input"), micro),
    SysfsField("temperature_gpu", temperature("edge")),
)
"""`llm_gpu` fields of an amdgpu card, in our units."""


def card_tags(card: DrmCard) -> dict[str, str]:
    name = read_text(card.device / "product_name")
    return {"name": name} if name else {}
