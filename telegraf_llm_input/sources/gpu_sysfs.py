"""Reading GPUs from Linux sysfs: the DRM cards of one PCI vendor, their hwmon sensors, one table-driven reader.

Shared by the AMD (amdgpu) and Intel (i915, xe) backends: both drivers put their numbers under
`class/drm/card<N>/device/` and a hwmon directory below it, in the units the hwmon ABI fixes
(µW, µJ, m°C). A backend is a table of `SysfsField`s (field, where it is read, unit conversion) that
`read_fields` reads. Nothing here needs root.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Dirs:
    """Where a card's numbers are: `card` (class/drm/cardN), `device` (its PCI device), one `hwmon` of it."""

    card: Path
    device: Path
    hwmon: Path | None = None


@dataclass(frozen=True)
class Read:
    """How one raw value of a card is read (None: not there); `hwmon`: it is read in each hwmon directory."""

    func: Callable[[Dirs], int | None]
    hwmon: bool = False

    def __call__(self, dirs: Dirs) -> int | None:
        return self.func(dirs)


def attr(path: str) -> Read:
    """An integer attribute at `card/...`, `device/...` or `hwmon/...`."""
    where, _, rest = path.partition("/")

    def read(dirs: Dirs) -> int | None:
        base = getattr(dirs, where)
        return None if base is None else read_int(base / rest)

    return Read(read, hwmon=where == "hwmon")


def dpm(path: str) -> Read:
    """The current level of an amdgpu `pp_dpm_*` table under the PCI device, in MHz."""
    return Read(lambda dirs: parse_dpm_current_mhz(read_text(dirs.device / path) or ""))


def channel(kind: str, label: str, attribute: str = "input") -> Read:
    """`<kind>N_<attribute>` of the hwmon channel labelled `label`."""
    return Read(lambda dirs: None if dirs.hwmon is None else labelled(dirs.hwmon, kind, label, attribute), hwmon=True)


def temperature(label: str) -> Read:
    """Whole °C of the hwmon temperature labelled `label`, else of an unlabelled `temp1`."""

    def read(dirs: Dirs) -> int | None:
        temps = temperatures_c(dirs.hwmon) if dirs.hwmon is not None else {}
        return temps.get(label, temps.get("temp1"))

    return Read(read, hwmon=True)


def first(*reads: Read, zero_is_absent: bool = False) -> Read:
    """The first of `reads` that gives a value (with `zero_is_absent`, a non-zero one)."""

    def read(dirs: Dirs) -> int | None:
        for one in reads:
            value = one(dirs)
            if value is not None and not (zero_is_absent and value == 0):
                return value
        return None

    return Read(read, hwmon=any(r.hwmon for r in reads))


def difference(a: Read, b: Read) -> Read:
    """a - b when both are there."""

    def read(dirs: Dirs) -> int | None:
        x, y = a(dirs), b(dirs)
        return None if x is None or y is None else x - y

    return Read(read, hwmon=a.hwmon or b.hwmon)


@dataclass(frozen=True)
class SysfsField:
    """One `llm_gpu` field of a sysfs backend: where it is read, and the conversion to the field's unit."""

    field: str
    read: Read
    convert: Callable[[int], Any] = int
    """The raw value -> the field's value (`micro`: µW -> W, `mib`: bytes -> MiB)."""


def read_fields(
    card: DrmCard, table: Sequence[SysfsField], hwmon_names: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The table's fields of one card, in its order; what the card does not expose is absent.

    A hwmon field comes from the first of the card's hwmon directories (those whose `name` is one of
    `hwmon_names`, or has none; all when None) that gives it."""
    hwmons = [
        h for h in hwmon_dirs(card.device) if hwmon_names is None or read_text(h / "name") in (None, *hwmon_names)
    ]
    plain = Dirs(card.card, card.device)
    out: dict[str, Any] = {}
    for row in table:
        if row.read.hwmon:
            value = next((v for h in hwmons if (v := row.read(Dirs(card.card, card.device, h))) is not None), None)
        else:
            value = row.read(plain)
        if value is not None:
            out[row.field] = row.convert(value)
    return out


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
