"""Reading GPUs from Linux sysfs: the DRM cards of one PCI vendor, their hwmon sensors, small parsers.

Shared by the AMD (amdgpu) and Intel (i915, xe) backends: both drivers put their numbers under
`class/drm/card<N>/device/` and a hwmon directory below it, in the units the hwmon ABI fixes
(µW, µJ, m°C). Nothing here needs root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
AMD_VENDOR = 0x1002
INTEL_VENDOR = 0x8086
_CARD = re.compile(r"card(\d+)$")
_TEMP = re.compile(r"temp(\d+)_input$")
_DPM_LEVEL = re.compile(r"^\s*\d+:\s*(\d+)\s*[Mm][Hh][Zz]\s*\*\s*$")


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def read_int(path: Path) -> int | None:
    """An integer sysfs attribute (decimal, or hex with 0x like `vendor`); None when absent or unreadable."""
    text = read_text(path)
    if not text:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def parse_uevent(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_dpm_current_mhz(text: str) -> int | None:
    """The current level of an amdgpu `pp_dpm_*` table (`1: 1800Mhz *`), in MHz."""
    for line in text.splitlines():
        match = _DPM_LEVEL.match(line)
        if match:
            return int(match.group(1))
    return None


@dataclass(frozen=True)
class DrmCard:
    """One DRM card of a vendor: `class/drm/card<index>` and the PCI device under it."""

    index: int
    card: Path
    device: Path
    driver: str | None
    pci_bus_id: str | None

    @property
    def present(self) -> bool:
        return (self.device / "vendor").exists()


def find_cards(sysfs_root: str | Path, vendor: int) -> list[DrmCard]:
    """The DRM cards (not their connectors, not render nodes) whose PCI vendor is `vendor`, by card number."""
    drm = Path(sysfs_root) / "class" / "drm"
    try:
        entries = list(drm.iterdir())
    except OSError:
        return []
    cards = []
    for entry in entries:
        match = _CARD.match(entry.name)
        if not match:
            continue
        device = entry / "device"
        if read_int(device / "vendor") != vendor:
            continue
        uevent = parse_uevent(read_text(device / "uevent") or "")
        bus_id = uevent.get("PCI_SLOT_NAME")
        if bus_id is None:
            try:
                bus_id = device.resolve(strict=True).name
            except OSError:
                bus_id = None
        cards.append(DrmCard(int(match.group(1)), entry, device, uevent.get("DRIVER"), bus_id))
    return sorted(cards, key=lambda c: c.index)


def hwmon_dirs(device: Path) -> list[Path]:
    try:
        return sorted(p for p in (device / "hwmon").iterdir() if p.name.startswith("hwmon"))
    except OSError:
        return []


def temperatures_c(hwmon: Path) -> dict[str, int]:
    """hwmon temperatures in whole °C by label (`edge`, `junction`, `mem`, `pkg`, `vram`), else by `tempN`."""
    out: dict[str, int] = {}
    try:
        names = sorted(p.name for p in hwmon.iterdir())
    except OSError:
        return out
    for name in names:
        match = _TEMP.match(name)
        if not match:
            continue
        milli = read_int(hwmon / name)
        if milli is None:
            continue
        label = (read_text(hwmon / f"temp{match.group(1)}_label") or f"temp{match.group(1)}").lower()
        out[label] = round(milli / 1000)
    return out


def labelled(hwmon: Path, kind: str, label: str, attr: str = "input") -> int | None:
    """`<kind>N_<attr>` of the channel whose `<kind>N_label` is `label` (xe labels its `card` and `pkg`)."""
    for n in range(1, 8):
        if (read_text(hwmon / f"{kind}{n}_label") or "").lower() == label:
            return read_int(hwmon / f"{kind}{n}_{attr}")
    return None


def micro(value: int | None) -> float | None:
    """µW -> W, µJ -> J."""
    return None if value is None else value / 1e6


def mib(value: int | None) -> float | None:
    return None if value is None else value / MIB


class EnergyRate:
    """Power from an energy counter: joules between two reads over the seconds between them."""

    def __init__(self) -> None:
        self._prev: tuple[float, float] | None = None

    def update(self, now_s: float, joules: float | None) -> float | None:
        if joules is None:
            self._prev = None
            return None
        prev, self._prev = self._prev, (now_s, joules)
        return power_w(prev, (now_s, joules))


def power_w(prev: tuple[float, float] | None, now: tuple[float, float]) -> float | None:
    """Watts between two (monotonic s, J) samples; None on the first one, a reset or a wrap."""
    if prev is None:
        return None
    dt, dj = now[0] - prev[0], now[1] - prev[1]
    if dt <= 0 or dj < 0:
        return None
    return dj / dt
