"""Intel GPUs through the i915 and xe drivers' sysfs and hwmon: no root.

hwmon (Documentation/ABI/testing/sysfs-driver-intel-{i915,xe}-hwmon): `energy1_input` in µJ (xe may label
channels `card` and `pkg`), `power1_max` (PL1, µW; 0 = disabled; xe: `powerN_label` `card`/`pkg`), `temp2_input` (`pkg`) / `temp3_input`
(`vram`) in m°C on xe. The GT frequency: i915 `card<N>/gt_act_freq_mhz` (`gt_cur_freq_mhz` = requested),
xe `device/tile0/gt0/freq0/act_freq` (`cur_freq`), in MHz. Power is the energy counter's rate (done by the
source, which keeps the previous reading). Integrated GPUs usually have no hwmon at all: then only the
clock is there (their energy is in RAPL, root-only).
"""

from __future__ import annotations

from telegraf_llm_input.sources.gpu_sysfs import (
    INTEL_VENDOR,
    DrmCard,
    SysfsField,
    attr,
    channel,
    first,
    micro,
    temperature,
)

VENDOR = "intel"
PCI_VENDOR = INTEL_VENDOR
HWMON_NAMES = ("i915", "xe")

FIELDS: tuple[SysfsField, ...] = (
    SysfsField(
        "clocks_sm_mhz",
        first(
            attr("card/gt_act_freq_mhz"),
            attr("card/gt_cur_freq_mhz"),
            attr("device/tile0/gt0/freq0/act_freq"),
            attr("device/tile0/gt0/freq0/cur_freq"),
        ),
    ),
    SysfsField("energy_total_j", first(channel("energy", "card"), attr("hwmon/energy1_input")), micro),
    # PL1 of the card, else of the package (xe); 0 means that limit is disabled.
    SysfsField(
        "power_limit_w",
        first(
            channel("power", "card", "max"),
            channel("power", "pkg", "max"),
            attr("hwmon/power1_max"),
            zero_is_absent=True,
        ),
        micro,
    ),
    SysfsField("temperature_gpu", temperature("pkg")),
)
"""`llm_gpu` fields of an i915/xe card (`power_draw_w` is added by the source from the energy's rate)."""


def card_tags(card: DrmCard) -> dict[str, str]:
    return {}
