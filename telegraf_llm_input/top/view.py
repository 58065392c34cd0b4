"""What one screen shows, built from one gather's metrics (the very points the sinks would get).

`TopModel.update` is the only stateful step: it keeps the last probe of each target (probes finish on
their own clock) and a few minutes of history for the sparklines. Everything else is a pure mapping
from schema fields to typed views.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from telegraf_llm_input.metric import FieldValue, Metric
from telegraf_llm_input.schema.agent import AGENT
from telegraf_llm_input.schema.base import Measurement
from telegraf_llm_input.schema.gpu import LLM_GPU
from telegraf_llm_input.schema.host import HOST
from telegraf_llm_input.schema.probe import PROBE
from telegraf_llm_input.schema.process import LLM_PROCESS
from telegraf_llm_input.schema.server import MODEL_LOADED, SERVER
from telegraf_llm_input.serverlogs import FORMATS

HISTORY_S = 300.0
"""How far back the sparklines reach."""


def schema_field(measurement: Measurement, name: str) -> str:
    """`name`, checked against the schema when this module loads: a renamed field fails here, not on screen."""
    if measurement.field(name) is None:
        raise LookupError(f"{measurement.name} documents no field {name!r}")
    return name


def _fields(measurement: Measurement, *names: str) -> tuple[str, ...]:
    return tuple(schema_field(measurement, n) for n in names)


(
    UP,
    BUSY,
    LOADING,
    RUNNING,
    WAITING,
    GEN_TPS,
    PROMPT_TPS,
    TTFT_P50,
    TTFT_P95,
    TPOT_P50,
    TPOT_P95,
    KV,
    SLOTS_BUSY,
    SLOTS_TOTAL,
    CONTEXT,
    ERROR_RATIO,
) = _fields(
    SERVER,
    "up",
    "busy",
    "loading",
    "requests_running",
    "requests_waiting",
    "generation_tokens_per_s",
    "prompt_tokens_per_s",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "tpot_p50_ms",
    "tpot_p95_ms",
    "kv_cache_usage_ratio",
    "slots_busy",
    "slots_total",
    "context_used_ratio",
    "error_ratio",
)
GPU_UTIL, GPU_MEM_USED, GPU_MEM_TOTAL, GPU_POWER, GPU_POWER_LIMIT, GPU_TEMP, GPU_LOST = _fields(
    LLM_GPU,
    "utilization_gpu",
    "memory_used_mib",
    "memory_total_mib",
    "power_draw_w",
    "power_limit_w",
    "temperature_gpu",
    "gpu_lost",
)
PROC_UP, PROC_CPU, PROC_RSS, PROC_TREE_RSS = _fields(LLM_PROCESS, "up", "cpu_percent", "rss_bytes", "tree_rss_bytes")
PROBE_SUCCESS, PROBE_TTFT, PROBE_TTFA, PROBE_TPS = _fields(PROBE, "success", "ttft_ms", "ttfa_ms", "tokens_per_s")
HOST_CPU, HOST_MEM, HOST_SWAP, HOST_SWAP_IN = _fields(
    HOST, "cpu_percent", "mem_used_percent", "swap_used_percent", "swap_in_bytes_per_s"
)
(GATHER_MS,) = _fields(AGENT, "gather_ms")
REQ_RATE, E2E_P50, E2E_P95, CLIENT_ERRORS = _fields(
    SERVER, "requests_per_s", "e2e_p50_ms", "e2e_p95_ms", "client_error_ratio"
)
MODEL_SIZE, MODEL_VRAM, MODEL_OFFLOAD, MODEL_UNLOAD = _fields(
    MODEL_LOADED, "size_bytes", "vram_bytes", "gpu_offload_ratio", "seconds_until_unload"
)
LOG_APIS = (None, "generate")
"""The server-log point whose request numbers a row shows: llama.cpp's (no `api`), Ollama's text generation."""


@dataclass(frozen=True)
class LoadedModelView:
    """A model the server holds in memory (Ollama `/api/ps`, LM Studio)."""

    name: str
    size_bytes: float | None
    vram_bytes: float | None
    offload_ratio: float | None
    unload_in_s: float | None


@dataclass(frozen=True)
class ProcessView:
    up: bool
    cpu_percent: float | None
    rss_bytes: float | None
    """The server and its children (`ollama serve` holds little; its `ollama runner` child holds the model)."""


@dataclass(frozen=True)
class ProbeView:
    success: bool
    error: str | None
    """The probe's `error` tag (`connect`, `timeout`, ...)."""
    ttft_ms: float | None
    ttfa_ms: float | None
    tokens_per_s: float | None
    age_s: float
    """Seconds between the probe's start and this gather."""
    skipped: str | None = None
    """The probe's `skip_reason` tag: not sent, so as not to load a model or keep one loaded."""


@dataclass(frozen=True)
class TargetView:
    target: str
    model: str | None
    server_type: str | None
    host: str | None
    """The point's `host` tag (the agent's host unless the target's tags set another)."""
    up: bool
    busy: bool
    loading: bool
    down_reason: str | None
    running: float | None
    waiting: float | None
    gen_tps: float | None
    prompt_tps: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    tpot_p50_ms: float | None
    tpot_p95_ms: float | None
    kv_ratio: float | None
    slots_busy: float | None
    slots_total: float | None
    context_ratio: float | None
    error_ratio: float | None
    process: ProcessView | None
    probe: ProbeView | None
    gen_history: tuple[float | None, ...]
    ttft_history: tuple[float | None, ...]
    requests_per_s: float | None = None
    """From the server's own log (Ollama, llama.cpp) where its page has no request counter."""
    e2e_p50_ms: float | None = None
    e2e_p95_ms: float | None = None
    client_error_ratio: float | None = None
    loaded: tuple[LoadedModelView, ...] = ()
    probe_tps_history: tuple[float | None, ...] = ()
    traffic_gap: str | None = None
    """Why its requests are not counted (its log not found, not readable, `log: none`); only while none are."""


@dataclass(frozen=True)
class GpuView:
    index: str
    name: str
    lost: bool
    utilization: float | None
    memory_used_mib: float | None
    memory_total_mib: float | None
    power_w: float | None
    power_limit_w: float | None
    temperature: float | None


@dataclass(frozen=True)
class HostView:
    cpu_percent: float | None
    mem_used_percent: float | None
    swap_used_percent: float | None
    swap_in_bytes_per_s: float | None


@dataclass(frozen=True)
class Snapshot:
    time_ns: int
    hostname: str | None
    interval_s: float
    gather_ms: float | None
    targets: tuple[TargetView, ...]
    gpus: tuple[GpuView, ...]
    host: HostView | None
    problems: tuple[str, ...]
    """Failing sources and outputs, and recent warnings: the log's own lines."""
    history_s: float
    """Time the sparklines cover now."""


def number(fields: Mapping[str, FieldValue], name: str) -> float | None:
    """A numeric field, or None when absent or not a finite number (a string field, NaN)."""
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _flag(fields: Mapping[str, FieldValue], name: str) -> bool:
    return (number(fields, name) or 0.0) >= 1.0


def process_view(metric: Metric) -> ProcessView:
    f = metric.fields
    tree = number(f, PROC_TREE_RSS)
    return ProcessView(_flag(f, PROC_UP), number(f, PROC_CPU), tree if tree is not None else number(f, PROC_RSS))


def probe_view(metric: Metric, now_ns: int) -> ProbeView:
    f = metric.fields
    return ProbeView(
        _flag(f, PROBE_SUCCESS),
        metric.tags.get("error"),
        number(f, PROBE_TTFT),
        number(f, PROBE_TTFA),
        number(f, PROBE_TPS),
        max(0.0, (now_ns - metric.time_ns) / 1e9),
        metric.tags.get("skip_reason"),
    )


def gpu_view(metric: Metric) -> GpuView:
    f = metric.fields
    return GpuView(
        metric.tags.get("index", "?"),
        metric.tags.get("name", ""),
        _flag(f, GPU_LOST),
        number(f, GPU_UTIL),
        number(f, GPU_MEM_USED),
        number(f, GPU_MEM_TOTAL),
        number(f, GPU_POWER),
        number(f, GPU_POWER_LIMIT),
        number(f, GPU_TEMP),
    )


def loaded_view(metric: Metric) -> LoadedModelView:
    f = metric.fields
    return LoadedModelView(
        metric.tags.get("model", "?"),
        number(f, MODEL_SIZE),
        number(f, MODEL_VRAM),
        number(f, MODEL_OFFLOAD),
        number(f, MODEL_UNLOAD),
    )


def is_log_point(metric: Metric) -> bool:
    """An `llm_server` point from a server's log (sources/serverlog.py): every scrape point carries `up`."""
    return metric.measurement == SERVER.name and UP not in metric.fields


def host_view(metric: Metric) -> HostView:
    f = metric.fields
    return HostView(number(f, HOST_CPU), number(f, HOST_MEM), number(f, HOST_SWAP), number(f, HOST_SWAP_IN))


class TopModel:
    """Folds each gather into a `Snapshot`, keeping what one gather alone does not have.

    `expected`: target name -> configured server type (None: auto), for targets to show even before (or while)
    their source gives no point at all.
    """

    def __init__(
        self, interval_s: float, history_s: float = HISTORY_S, expected: Mapping[str, str | None] | Sequence[str] = ()
    ):
        self.interval_s = interval_s
        self._samples = max(2, int(round(history_s / interval_s)))
        self._history: dict[tuple[str, str | None], tuple[collections.deque, collections.deque]] = {}
        self._probes: dict[str, Metric] = {}
        self._order: list[str] = list(dict.fromkeys(expected))
        self._types: dict[str, str | None] = dict(expected) if isinstance(expected, Mapping) else {}
        self._last: dict[str, list[TargetView]] = {}
        self._gathers = 0
        self._probe_tps: dict[str, collections.deque] = {}
        self._logs: dict[str, Metric] = {}
        """This gather's server-log point of each target (the one `LOG_APIS` names)."""
        self._loaded: dict[str, list[LoadedModelView]] = {}
        self._gaps: Mapping[str, str] = {}

    def _series(self, key: tuple[str, str | None]) -> tuple[collections.deque, collections.deque]:
        if key not in self._history:
            self._history[key] = (collections.deque(maxlen=self._samples), collections.deque(maxlen=self._samples))
        return self._history[key]

    def update(
        self,
        metrics: Sequence[Metric],
        down_reasons: Mapping[str, str] | None = None,
        problems: Iterable[str] = (),
        silent: Mapping[str, str] | None = None,
        time_ns: int | None = None,
        traffic_gaps: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """One gather. `down_reasons`: target -> why it is down (for `up=0` points); `silent`: target -> why its
        source gave no point this gather; `problems`: other failures to list; `traffic_gaps`: target -> why its
        requests are not counted."""
        self._gathers += 1
        self._gaps = traffic_gaps or {}
        down_reasons = down_reasons or {}
        silent = silent or {}
        now_ns = time_ns if time_ns is not None else max((m.time_ns for m in metrics), default=0)
        processes = {m.tags.get("target"): m for m in metrics if m.measurement == LLM_PROCESS.name}
        for m in metrics:
            if m.measurement == PROBE.name and m.time_ns >= self._probes.get(m.tags.get("target", ""), m).time_ns:
                self._probes[m.tags.get("target", "")] = m
        logs: dict[str, Metric] = {}
        loaded: dict[str, list[LoadedModelView]] = {}
        for m in metrics:
            if is_log_point(m) and m.tags.get("api") in LOG_APIS and REQ_RATE in m.fields:
                logs[m.tags.get("target", "?")] = m
            elif m.measurement == MODEL_LOADED.name:
                loaded.setdefault(m.tags.get("target", "?"), []).append(loaded_view(m))
        self._logs, self._loaded = logs, loaded
        for name, probe in self._probes.items():
            tps = self._probe_tps.setdefault(name, collections.deque(maxlen=self._samples))
            tps.append(number(probe.fields, PROBE_TPS) if probe.time_ns > now_ns - self.interval_s * 1e9 else None)
        rows: dict[str, list[TargetView]] = {}
        seen: set[tuple[str, str | None]] = set()
        for m in metrics:
            if m.measurement != SERVER.name or is_log_point(m):
                continue
            name = m.tags.get("target", "?")
            key = (name, m.tags.get("model"))
            if key in seen:  # a json/prometheus target's extra series: the first point is the target's own
                continue
            seen.add(key)
            rows.setdefault(name, []).append(self._row(name, m, down_reasons.get(name), processes, now_ns))
        self._order.extend(name for name in rows if name not in self._order)
        targets: list[TargetView] = []
        for name in self._order:
            if name in rows:
                self._last[name] = rows[name]
                targets.extend(rows[name])
                continue
            before_rows: Sequence[TargetView | None] = self._last.get(name) or [None]
            for before in before_rows:
                key = (name, before.model if before else None)
                seen.add(key)
                targets.append(
                    self._row(name, None, silent.get(name, "no result this gather"), processes, now_ns, before)
                )
        for gone in set(self._history) - seen:
            del self._history[gone]
        agent = next(
            (
                m
                for m in metrics
                if m.measurement == AGENT.name and not m.tags.get("source") and not m.tags.get("output")
            ),
            None,
        )
        host = next((m for m in metrics if m.measurement == HOST.name), None)
        hostname = next((m.tags["host"] for m in metrics if "host" in m.tags), None)
        return Snapshot(
            time_ns=now_ns,
            hostname=hostname,
            interval_s=self.interval_s,
            gather_ms=number(agent.fields, GATHER_MS) if agent else None,
            targets=tuple(targets),
            gpus=tuple(gpu_view(m) for m in metrics if m.measurement == LLM_GPU.name),
            host=host_view(host) if host else None,
            problems=tuple(problems),
            history_s=min(self._gathers, self._samples) * self.interval_s,
        )

    def _row(
        self,
        name: str,
        point: Metric | None,
        reason: str | None,
        processes: Mapping[str | None, Metric],
        now_ns: int,
        before: TargetView | None = None,
    ) -> TargetView:
        """A target's view from its `llm_server` point; without one, a down row that keeps what was known."""
        f = point.fields if point is not None else {}
        model = point.tags.get("model") if point is not None else before.model if before else None
        server_type = (
            point.tags.get("server_type")
            if point is not None
            else before.server_type
            if before
            else self._types.get(name)
        )
        host = point.tags.get("host") if point is not None else before.host if before else None
        gen, ttft = self._series((name, model))
        gen.append(number(f, GEN_TPS))
        ttft.append(number(f, TTFT_P95))
        up = _flag(f, UP)
        process = processes.get(name)
        probe = self._probes.get(name)
        lf = self._logs[name].fields if name in self._logs else {}
        models = tuple(sorted(self._loaded.get(name, ()), key=lambda v: v.name))
        error_ratio = number(f, ERROR_RATIO)
        requests = number(f, REQ_RATE) if REQ_RATE in f else number(lf, REQ_RATE)
        return TargetView(
            target=name,
            model=model,
            server_type=server_type,
            host=host,
            up=up,
            busy=_flag(f, BUSY),
            loading=_flag(f, LOADING),
            down_reason=None if up else reason,
            running=number(f, RUNNING),
            waiting=number(f, WAITING),
            gen_tps=number(f, GEN_TPS),
            prompt_tps=number(f, PROMPT_TPS),
            ttft_p50_ms=number(f, TTFT_P50),
            ttft_p95_ms=number(f, TTFT_P95),
            tpot_p50_ms=number(f, TPOT_P50) if TPOT_P50 in f else number(lf, TPOT_P50),  # llama.cpp: its log's
            tpot_p95_ms=number(f, TPOT_P95) if TPOT_P95 in f else number(lf, TPOT_P95),
            kv_ratio=number(f, KV),
            slots_busy=number(f, SLOTS_BUSY),
            slots_total=number(f, SLOTS_TOTAL),
            context_ratio=number(f, CONTEXT),
            error_ratio=error_ratio if error_ratio is not None else number(lf, ERROR_RATIO),
            process=process_view(process) if process else None,
            probe=probe_view(probe, now_ns) if probe else None,
            gen_history=tuple(gen),
            ttft_history=tuple(ttft),
            requests_per_s=requests,
            traffic_gap=self._gaps.get(name) if requests is None and server_type in FORMATS else None,
            e2e_p50_ms=number(f, E2E_P50) if E2E_P50 in f else number(lf, E2E_P50),
            e2e_p95_ms=number(f, E2E_P95) if E2E_P95 in f else number(lf, E2E_P95),
            client_error_ratio=number(lf, CLIENT_ERRORS),
            loaded=models if model is None else tuple(v for v in models if v.name == model),
            probe_tps_history=tuple(self._probe_tps.get(name, ())),
        )
