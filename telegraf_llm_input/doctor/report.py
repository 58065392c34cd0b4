"""What `doctor` says: one line per check (ok, no, or a plain note), the exact fix under each "no"."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "no", "note"]
MARKS = {"ok": "ok  ", "no": "NO  ", "note": "--  "}


@dataclass(frozen=True)
class Check:
    area: str
    """The heading it goes under: `model servers`, `GPU`, `what this user can see`, `outputs`, `Telegraf`."""
    status: Status
    text: str
    fix: str | None = None
    """For a "no": what to change, in words a user can act on."""
    blocking: bool = True
    """A "no" that stops something configured from working (it sets the exit status); False: worth knowing."""


def ok(area: str, text: str) -> Check:
    return Check(area, "ok", text)


def no(area: str, text: str, fix: str | None = None, blocking: bool = True) -> Check:
    return Check(area, "no", text, fix, blocking)


def note(area: str, text: str) -> Check:
    return Check(area, "note", text)


def failed(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if c.status == "no" and c.blocking]


def render(header: str, checks: Sequence[Check]) -> str:
    """The screen: the header, then each area's checks in the order they came."""
    lines = [header]
    areas: list[str] = []
    for c in checks:
        if c.area not in areas:
            areas.append(c.area)
    for area in areas:
        lines.append("")
        lines.append(area)
        for c in checks:
            if c.area != area:
                continue
            lines.append(f"  {MARKS[c.status]}{c.text}")
            if c.fix:
                lines.append(f"        fix: {c.fix}")
    bad = failed(checks)
    lines.append("")
    if bad:
        lines.append(f"{len(bad)} thing(s) configured cannot work as things stand (NO above); exit status 1.")
    else:
        lines.append("Everything configured can work.")
    return "\n".join(lines) + "\n"
