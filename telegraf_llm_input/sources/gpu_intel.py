"""Intel GPUs through the i915 and xe drivers' sysfs and hwmon: no root.

hwmon (Documentation/ABI/testing/sysfs-driver-intel-{i915,xe}-hwmon): `energy1_input` in µJ (xe may label
channels `card` and `pkg`), `power1_max` (PL1, µW; 0 = disabled; xe: `powerN_label` `card`/`pkg`), `temp2_input` (`pkg`) / `temp3_input`
(`vram`) in m°C on xe. The GT frequency: i915 `card<N>/gt_act_freq_mhz` (`gt_cur_freq_mhz` = requested),
xe `device/tile0/gt0/freq0/act_freq` (`cur_freq`), in MHz. Power is the energy counter's rate (done by the
source, which keeps the previous reading). Integrated GPUs usually have no hwmon at all: then only the
clock is there (their energy is in RAPL, root-only).
"""

from __future__ import annotations

from typing import Any

from telegraf_llm_input.sources.gpu_sysfs import (
    INTEL_VENDOR,
    DrmCard,
    hwmon_dirs,
    labelled,
    micro,
    read_int,
    read_text,
    temperatures_c,
)

VENDOR = "intel"
PCI_VENDOR = INTEL_VENDOR


def card_tags(card: DrmCard) -> dict[str, str]:
    return {}


def _gt_freq_mhz(card: DrmCard) -> int | None:
    for path in (
        card.card / "gt_act_freq_mhz",
        card.card / "gt_cur_freq_mhz",
        card.device / "tile0" / "gt0" / "freq0" / "act_freq",
        card.device / "tile0" / "gt0" / "freq0" / "cur_freq",
    ):
        value = read_int(path)
        if value is not None:
            return value
    return None


def read_card(card: DrmCard) -> dict[str, Any]:
    """`llm_gpu` fields of one i915/xe card (power_draw_w is added by the source from the energy's rate)."""
    fields: dict[str, Any] = {"clocks_sm_mhz": _gt_freq_mhz(card)}
    for hwmon in hwmon_dirs(card.device):
        if read_text(hwmon / "name") not in (None, "i915", "xe"):
            continue
        energy = labelled(hwmon, "energy", "card")
        if energy is None:
            energy = read_int(hwmon / "energy1_input")
        # PL1 of the card, else of the package (xe); 0 means that limit is disabled.
        limit = (
            labelled(hwmon, "power", "card", "max")
            or labelled(hwmon, "power", "pkg", "max")
            or read_int(hwmon / "power1_max")
        )
        temps = temperatures_c(hwmon)
        temp = temps.get("pkg", temps.get("temp1"))
        if energy is not None:
            fields.setdefault("energy_total_j", micro(energy))
        if limit:
            fields.setdefault("power_limit_w", micro(limit))
        if temp is not None:
            fields.setdefault("temperature_gpu", temp)
    return {k: v for k, v in fields.items() if v is not None}
