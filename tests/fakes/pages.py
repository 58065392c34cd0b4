"""Builders for the wire formats the fakes speak (facts in tests/fixtures/prometheus/README.md)."""

from __future__ import annotations

from collections.abc import Sequence


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _num(value: float, style: str) -> str:
    if style == "rust":  # metrics-exporter-prometheus: integral values without ".0"
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return repr(float(value))  # prometheus_client (Python): always a float


def histogram(
    name: str,
    labels: dict[str, str],
    bounds: Sequence[float],
    cumulative: Sequence[float],
    total: float,
    style: str = "python",
) -> list[str]:
    """`_bucket` lines (cumulative counts, +Inf last), then `_count`, `_sum`."""
    assert len(cumulative) == len(bounds) + 1
    lines = []
    for bound, count in zip([*bounds, float("inf")], cumulative):
        le = "+Inf" if bound == float("inf") else _num(bound, style)
        lines.append(f"{name}_bucket{_labels({**labels, 'le': le})} {_num(count, style)}")
    lines.append(f"{name}_count{_labels(labels)} {_num(cumulative[-1], style)}")
    lines.append(f"{name}_sum{_labels(labels)} {_num(total, style)}")
    return lines


def family(name: str, kind: str, lines: list[str], help_text: str | None = None) -> str:
    head = [f"# HELP {name} {help_text or name}"] if help_text is not None or kind != "rust" else []
    return "\n".join([*head, f"# TYPE {name} {kind}", *lines])


def sample(name: str, labels: dict[str, str], value: float, style: str = "python") -> str:
    return f"{name}{_labels(labels)} {_num(value, style)}"
