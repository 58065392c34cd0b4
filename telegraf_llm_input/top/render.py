"""Snapshot -> screen lines, as pure functions (no terminal, no clock), so every frame is testable.

A line is a tuple of (text, style) spans; `plain` and `ansi` turn one into a string. Styles name a
meaning (`ok`, `warn`, `bad`, ...), not a colour, so NO_COLOR and dumb terminals lose nothing but colour.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from telegraf_llm_input.top.view import (
    GpuView,
    HostView,
    LoadedModelView,
    ProbeView,
    ProcessView,
    Snapshot,
    TargetView,
)

Span = tuple[str, str]
Line = tuple[Span, ...]

SGR = {"bold": "1", "dim": "2", "ok": "32", "warn": "33", "bad": "1;31", "head": "1;7", "key": "36"}


@dataclass(frozen=True)
class Glyphs:
    dot: str
    sep: str
    more: str
    degree: str
    bars: str
    """Sparkline levels, lowest first; the first one also draws a zero."""


UNICODE = Glyphs("●", " · ", "…", "°C", "▁▂▃▄▅▆▇█")
ASCII = Glyphs("*", " | ", "~", "C", "_.-=+*#@")


# ---- numbers ---------------------------------------------------------------------------------------------


def fmt_num(value: float | None) -> str:
    """Three significant figures, k/M above 10,000: `42.1`, `310`, `12.3k`."""
    if value is None:
        return "-"
    a = abs(value)
    if a >= 10_000_000:
        return f"{value / 1e6:.0f}M"
    if a >= 10_000:
        return f"{value / 1e3:.1f}k" if a < 100_000 else f"{value / 1e3:.0f}k"
    if a >= 100 or value == int(value):
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.0f} s"
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def fmt_ratio(value: float | None) -> str:
    """A 0-1 ratio as a percentage."""
    return "-" if value is None else f"{value * 100:.0f}%" if value >= 0.1 or value == 0 else f"{value * 100:.1f}%"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 1024.0**3), ("MiB", 1024.0**2), ("KiB", 1024.0)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def fmt_age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


KEPT_LOADED_S = 20 * 365 * 86400.0
"""An unload further away than this is Ollama's `keep_alive: -1` (an `expires_at` centuries ahead): never, as
`ollama ps` says "Forever"."""


# ---- sparklines --------------------------------------------------------------------------------------------


def buckets(
    values: Sequence[float | None], width: int, reduce: Callable[[list[float]], float] = max
) -> list[float | None]:
    """At most `width` values: consecutive runs of `values` folded with `reduce` (gaps stay gaps)."""
    if width <= 0 or not values:
        return []
    size = max(1, math.ceil(len(values) / width))
    start = len(values) - size * math.ceil(len(values) / size)  # the newest bucket is always full
    out: list[float | None] = []
    for lo in range(start, len(values), size):
        chunk = [v for v in values[max(0, lo) : lo + size] if v is not None]
        out.append(reduce(chunk) if chunk else None)
    return out


def sparkline(
    values: Sequence[float | None], width: int, glyphs: Glyphs = UNICODE, reduce: Callable[[list[float]], float] = max
) -> str:
    """`values` (oldest first) as one character each, scaled from 0 to their maximum; a gap is a space.

    Right-aligned in `width`, so the newest value is always at the same place."""
    points = buckets(values, width, reduce)
    top = max((v for v in points if v is not None), default=0.0)
    levels = len(glyphs.bars) - 1
    chars = []
    for v in points:
        if v is None:
            chars.append(" ")
        else:
            chars.append(glyphs.bars[0 if top <= 0 else min(levels, max(0, round(v / top * levels)))])
    return "".join(chars).rjust(width)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


# ---- lines -------------------------------------------------------------------------------------------------


def width_of(line: Line) -> int:
    return sum(len(text) for text, _ in line)


def fit(line: Line, width: int, glyphs: Glyphs = UNICODE) -> Line:
    """`line` cut to `width` characters, the cut marked with an ellipsis."""
    if width_of(line) <= width:
        return line
    out: list[Span] = []
    room = max(0, width - len(glyphs.more))
    for text, style in line:
        if room <= 0:
            break
        out.append((text[:room], style))
        room -= len(text[:room])
    out.append((glyphs.more, "dim"))
    return tuple(out)


def plain(line: Line) -> str:
    return "".join(text for text, _ in line).rstrip()


def ansi(line: Line) -> str:
    return "".join(f"\x1b[{SGR[style]}m{text}\x1b[0m" if style in SGR and text else text for text, style in line)


def _join(parts: Iterable[Line], glyphs: Glyphs, indent: str = "  ") -> Line:
    out: list[Span] = [(indent, "")]
    for i, part in enumerate(p for p in parts if p):
        if i:
            out.append((glyphs.sep, "dim"))
        out.extend(part)
    return tuple(out)


def _wrap(parts: Sequence[Line], width: int, glyphs: Glyphs) -> list[Line]:
    """`_join` of `parts` on as many lines of `width` as they need (a part is never cut between two)."""
    lines: list[list[Line]] = [[]]
    for part in (p for p in parts if p):
        if lines[-1] and width_of(_join([*lines[-1], part], glyphs)) > width:
            lines.append([])
        lines[-1].append(part)
    return [_join(line, glyphs) for line in lines]


def _kv(label: str, value: str, style: str = "bold") -> Line:
    return ((f"{label} ", "dim"), (value, style if value != "-" else "dim"))


def _level(ratio: float | None, warn: float = 0.8, bad: float = 0.95) -> str:
    if ratio is None:
        return "dim"
    return "bad" if ratio >= bad else "warn" if ratio >= warn else "bold"


def _state(t: TargetView) -> tuple[str, str]:
    if t.loading:
        return "LOADING", "warn"
    if not t.up:
        return "DOWN", "bad"
    if t.busy:
        return "BUSY", "warn"
    return "UP", "ok"


ESSENTIAL, DETAIL, CHART = 0, 1, 2
"""Line priorities: on a short terminal, charts go first, then details; what is up or down always stays."""


def target_lines(
    t: TargetView, width: int, glyphs: Glyphs, history_s: float = 0.0, hostname: str | None = None
) -> list[tuple[int, Line]]:
    """A target's block; its host is named when it is not the header's (`hostname`)."""
    label, style = _state(t)
    where: Line = (("@" + t.host, "dim"),) if t.host and t.host != hostname else ()
    left: Line = (
        (glyphs.dot + " ", style),
        (t.target, "bold"),
        *where,
        ("  " + (t.server_type or "?"), "key"),
        ("  ", ""),
    )
    room = max(10, width - len(label) - 1)
    model = t.model or ", ".join(m.name for m in t.loaded) or "-"
    if width_of(left) + len(model) > room:  # a model path: its end (the file name) says the most
        keep = room - width_of(left) - len(glyphs.more)
        model = glyphs.more + model[-keep:] if keep >= 8 else model
    left = fit((*left, (model, "")), room, glyphs)
    lines: list[tuple[int, Line]] = [
        (ESSENTIAL, (*left, (" " * max(1, width - width_of(left) - len(label)), ""), (label, style)))
    ]
    if t.loading:
        lines.append((ESSENTIAL, _join([(("loading the model", "warn"),)], glyphs)))
    elif not t.up:
        lines.append((ESSENTIAL, _join([(("why: ", "dim"), (t.down_reason or "no answer", "bad"))], glyphs)))
    if t.up:
        slots = f"{fmt_num(t.slots_busy)}/{fmt_num(t.slots_total)}" if t.slots_total is not None else None
        load: list[Line] = []
        ollama = t.server_type == "ollama"  # its requests/s come from its log (the first frame: not yet)
        if t.requests_per_s is not None or ollama:
            load.append((*_kv("req", fmt_num(t.requests_per_s)), ("/s" if t.requests_per_s is not None else "", "dim")))
        counts = not ollama and t.requests_per_s is None  # Ollama says none of these
        if t.running is not None or t.waiting is not None or counts:
            load.append(
                (
                    *_kv("run", fmt_num(t.running)),
                    (" ", ""),
                    *_kv("wait", fmt_num(t.waiting), "warn" if (t.waiting or 0) > 0 else "bold"),
                )
            )
        if t.gen_tps is not None or t.prompt_tps is not None or counts:
            load.append((*_kv("gen", fmt_num(t.gen_tps)), (" tok/s", "dim")))
            load.append((*_kv("prompt", fmt_num(t.prompt_tps)), (" tok/s", "dim")))
        if t.kv_ratio is not None:
            load.append(_kv("kv", fmt_ratio(t.kv_ratio), _level(t.kv_ratio)))
        if slots is not None:
            load.append(
                _kv("slots", slots, _level((t.slots_busy or 0) / t.slots_total if t.slots_total else None, 1.0))
            )
        if t.context_ratio is not None:
            load.append(_kv("ctx", fmt_ratio(t.context_ratio), _level(t.context_ratio)))
        if t.error_ratio is not None:
            load.append(_kv("err", fmt_ratio(t.error_ratio), "bad" if t.error_ratio > 0 else "ok"))
        if t.client_error_ratio:
            load.append(_kv("4xx", fmt_ratio(t.client_error_ratio), "warn"))
        first, *rest = _wrap(load, width, glyphs)  # a wide line (llama.cpp: slots and ctx) goes on, not cut
        lines.append((ESSENTIAL, first))
        lines.extend((DETAIL, line) for line in rest)
        if t.traffic_gap:  # Ollama's and llama.cpp's requests are seen in their log only
            lines.append(
                (
                    ESSENTIAL,
                    fit(_join([(("requests unseen: ", "dim"), (t.traffic_gap, "warn"))], glyphs), width, glyphs),
                )
            )
        lines.extend((ESSENTIAL, _loaded(m, glyphs)) for m in t.loaded)
        latency = []
        for name, p50, p95 in (
            ("e2e", t.e2e_p50_ms, t.e2e_p95_ms),
            ("ttft", t.ttft_p50_ms, t.ttft_p95_ms),
            ("tpot", t.tpot_p50_ms, t.tpot_p95_ms),
        ):
            if p50 is not None or p95 is not None:
                latency.append((*_kv(f"{name} p50", fmt_ms(p50)), (" ", ""), *_kv("p95", fmt_ms(p95))))
        if latency:
            lines.append((DETAIL, _join(latency, glyphs)))
    extra = [_process(t.process) if t.process else (), _probe(t.probe) if t.probe else ()]
    if any(extra):
        lines.append((DETAIL, _join(extra, glyphs)))
    lines.extend((CHART, line) for line in _sparklines(t, width, glyphs, history_s))
    return lines


def _loaded(m: LoadedModelView, glyphs: Glyphs) -> Line:
    """A model in memory: how big, how much on the GPU (below 100%: layers on the CPU), when it unloads."""
    parts: list[Line] = [
        (("model ", "dim"), (m.name, "bold")),
        _kv("size", fmt_bytes(m.size_bytes)),
        _kv("vram", fmt_bytes(m.vram_bytes)),
        _kv("gpu", fmt_ratio(m.offload_ratio), "bold" if m.offload_ratio is None or m.offload_ratio >= 1 else "warn"),
    ]
    if m.unload_in_s is not None:
        parts.append(
            _kv("unload", "never") if m.unload_in_s >= KEPT_LOADED_S else _kv("unload in", fmt_age(m.unload_in_s))
        )
    return _join(parts, glyphs)


def _process(p: ProcessView) -> Line:
    if not p.up:
        return (("process ", "dim"), ("not found", "bad"))
    return (("process ", "dim"), *_kv("cpu", fmt_pct(p.cpu_percent)), (" ", ""), *_kv("rss", fmt_bytes(p.rss_bytes)))


def _probe(p: ProbeView) -> Line:
    head: Line = (("probe ", "dim"), (f"{fmt_age(p.age_s)} ago ", "dim"))
    if p.skipped is not None:
        return (*head, ("skipped: " + p.skipped, "dim"))
    if not p.success:
        return (*head, ("FAILED " + (p.error or ""), "bad"))
    body: list[Span] = [*_kv("ttft", fmt_ms(p.ttft_ms))]
    if p.ttfa_ms is not None:
        body += [(" ", ""), *_kv("ttfa", fmt_ms(p.ttfa_ms))]
    body += [(" ", ""), (fmt_num(p.tokens_per_s), "bold"), (" tok/s", "dim")]
    return (*head, *body)


def _sparklines(t: TargetView, width: int, glyphs: Glyphs, history_s: float) -> list[Line]:
    charts: list[tuple[str, tuple[float | None, ...], str, Callable[[list[float]], float]]] = []
    if any(v is not None for v in t.gen_history):
        charts.append(("gen tok/s", t.gen_history, fmt_num(t.gen_history[-1]), _mean))
    if any(v is not None for v in t.ttft_history):
        charts.append(("ttft p95", t.ttft_history, fmt_ms(t.ttft_history[-1]), max))
    if not charts and any(v is not None for v in t.probe_tps_history):
        last = next((v for v in reversed(t.probe_tps_history) if v is not None), None)
        charts.append(("probe tok/s", t.probe_tps_history, fmt_num(last), _mean))
    if not charts:
        return []
    span: Line = ((f"last {fmt_age(history_s)}", "dim"),)
    fixed = (
        sum(len(label) + len(last) + 2 for label, _, last, _ in charts)
        + 2
        + width_of(span)
        + len(glyphs.sep) * len(charts)
    )
    each = max(4, min(60, (width - fixed) // len(charts)))
    return [
        _join(
            [
                span,
                *(
                    ((f"{label} ", "dim"), (sparkline(values, each, glyphs, reduce), "key"), (f" {last}", "bold"))
                    for label, values, last, reduce in charts
                ),
            ],
            glyphs,
        )
    ]


def gpu_lines(gpus: Sequence[GpuView], width: int, glyphs: Glyphs) -> list[Line]:
    if not gpus:
        return []
    lines: list[Line] = [(("GPU", "head"),)]
    for g in gpus:
        head: Line = ((f"{g.index:>3} ", "bold"),)
        if g.lost:
            lines.append((*head, (g.name + " ", ""), ("LOST (needs a reset)", "bad")))
            continue
        mem_ratio = (
            g.memory_used_mib / g.memory_total_mib if g.memory_used_mib is not None and g.memory_total_mib else None
        )
        mem = (
            f"{fmt_num((g.memory_used_mib or 0) / 1024)}/{fmt_num(g.memory_total_mib / 1024)} GiB"
            if g.memory_total_mib
            else f"{fmt_num(g.memory_used_mib)} MiB"
        )
        power = (
            f"{fmt_num(g.power_w)}/{fmt_num(g.power_limit_w)} W"
            if g.power_limit_w is not None
            else f"{fmt_num(g.power_w)} W"
        )
        temp = "-" if g.temperature is None else f"{g.temperature:.0f}{glyphs.degree}"
        stats: Line = (
            (" util ", "dim"),
            (f"{fmt_pct(g.utilization):>4}", _level(None if g.utilization is None else g.utilization / 100, 0.9, 2.0)),
            (" mem ", "dim"),
            (mem, _level(mem_ratio, 0.9)),
            (" ", ""),
            (f"({fmt_ratio(mem_ratio)})", "dim"),
            (" pwr ", "dim"),
            (power, "bold"),
            (" ", ""),
            (temp, "bad" if (g.temperature or 0) >= 85 else "bold"),
        )
        name_room = max(4, width - width_of(head) - width_of(stats))
        name = g.name if len(g.name) <= name_room else g.name[: max(0, name_room - len(glyphs.more))] + glyphs.more
        lines.append((*head, (name.ljust(name_room), ""), *stats))
    return lines


def host_line(h: HostView, glyphs: Glyphs) -> Line:
    swapping = (h.swap_in_bytes_per_s or 0) > 0
    parts = [
        (("host ", "head"), *_kv("cpu", fmt_pct(h.cpu_percent))),
        _kv(
            "mem",
            fmt_pct(h.mem_used_percent),
            _level(None if h.mem_used_percent is None else h.mem_used_percent / 100, 0.9),
        ),
        _kv("swap", fmt_pct(h.swap_used_percent)),
    ]
    if swapping:
        parts.append((("swapping in ", "bad"), (f"{fmt_bytes(h.swap_in_bytes_per_s)}/s", "bad")))
    return _join(parts, glyphs, indent="")


def header(s: Snapshot, width: int, glyphs: Glyphs, keys: bool) -> Line:
    clock = time.strftime("%H:%M:%S", time.localtime(s.time_ns / 1e9)) if s.time_ns else "--:--:--"
    parts: list[Line] = [(("telegraf-llm-input top", "head"),)]
    if s.hostname:
        parts.append(((s.hostname, "bold"),))
    parts.append((("every ", "dim"), (f"{s.interval_s:g}s", "")))
    parts.append(((clock, ""),))
    if s.gather_ms is not None:
        parts.append(_kv("gather", f"{s.gather_ms:.0f} ms", ""))
    left = fit(_join(parts, glyphs, indent=""), width, glyphs)
    hint = "q: quit"
    if keys and width_of(left) + len(hint) + 1 <= width:
        return (*left, (" " * (width - width_of(left) - len(hint)), ""), (hint, "dim"))
    return left


def render(
    s: Snapshot, width: int = 80, height: int | None = None, *, glyphs: Glyphs = UNICODE, keys: bool = False
) -> list[Line]:
    """The whole screen: header, one block per target, GPUs, host, then what is failing.

    With `height`, charts and then details make room when the screen is short; what still does not fit is
    replaced by one line saying how many lines were left out.
    """
    width = max(20, width)
    rows: list[tuple[int, Line]] = [(ESSENTIAL, header(s, width, glyphs, keys))]
    if not s.targets:
        rows.append((ESSENTIAL, (("no model server target (none configured, none discovered yet)", "warn"),)))
    for t in s.targets:
        rows.extend(target_lines(t, width, glyphs, s.history_s, s.hostname))
    rows.extend((ESSENTIAL, line) for line in gpu_lines(s.gpus, width, glyphs))
    if s.host is not None:
        rows.append((DETAIL, host_line(s.host, glyphs)))
    rows.extend((ESSENTIAL, (("! ", "warn"), (problem, "warn"))) for problem in s.problems)
    for drop in (CHART, DETAIL):
        if height is not None and len(rows) > height:
            rows = [row for row in rows if row[0] < drop]
    lines = [fit(line, width, glyphs) for _, line in rows]
    if height is not None and len(lines) > height:
        hidden = len(lines) - (height - 1)
        lines = lines[: height - 1] + [
            fit(((f"{glyphs.more} {hidden} more lines (a taller terminal shows them)", "dim"),), width, glyphs)
        ]
    return lines
