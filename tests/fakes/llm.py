"""Fakes of each model server, built on FakeServer, whose counters/histograms the test moves."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.fakes.pages import family, histogram, sample
from tests.fakes.server import FakeServer, Reply

Hist = tuple[list[float], list[float], float]
"""(bounds without +Inf, cumulative counts incl. +Inf, sum) in seconds."""


@dataclass
class Snap:
    running: float = 0
    waiting: float = 0
    kv: float = 0.0
    prompt: float = 0
    generation: float = 0
    finished: dict[str, float] = field(default_factory=dict)
    preemptions: float = 0
    hists: dict[str, Hist] = field(default_factory=dict)
    """Latencies (VLLM_HIST keys, seconds) and per-request token counts (VLLM_TOKEN_HIST keys)."""
    prefix_queries: float | None = None
    prefix_hits: float = 0
    spec: tuple[float, float, float] | None = None
    """(drafts, draft tokens, accepted tokens); V0 (`old`) has no drafts counter, and gauges instead."""
    lora: tuple[list[str], list[str], int] | None = None
    """(running adapters, waiting adapters, max_lora): `vllm:lora_requests_info` (no model label)."""


VLLM_HIST = {
    "ttft": "vllm:time_to_first_token_seconds",
    "itl": "vllm:inter_token_latency_seconds",
    "tpot": "vllm:request_time_per_output_token_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
    "queue": "vllm:request_queue_time_seconds",
    "prefill": "vllm:request_prefill_time_seconds",
    "decode": "vllm:request_decode_time_seconds",
}
VLLM_TOKEN_HIST = {
    "request_prompt_tokens": "vllm:request_prompt_tokens",
    "request_generation_tokens": "vllm:request_generation_tokens",
    "request_max_tokens": "vllm:request_params_max_tokens",
}


def vllm_page(models: dict[str, Snap], engines: int = 1, old: bool = False) -> str:
    """A vLLM page; with engines > 1 each engine reports an equal share of every number."""
    out = []
    share = 1.0 / engines

    def series(name, kind, per_model):
        lines = []
        for model, snap in models.items():
            for e in range(engines):
                labels = {"model_name": model} if old else {"engine": str(e), "model_name": model}
                lines.extend(per_model(snap, labels))
                if old:
                    break
        out.append(family(name, kind, lines, "help"))

    series(
        "vllm:num_requests_running",
        "gauge",
        lambda s, lab: [sample("vllm:num_requests_running", lab, s.running * share)],
    )
    series(
        "vllm:num_requests_waiting",
        "gauge",
        lambda s, lab: [sample("vllm:num_requests_waiting", lab, s.waiting * share)],
    )
    kv = "vllm:gpu_cache_usage_perc" if old else "vllm:kv_cache_usage_perc"
    series(kv, "gauge", lambda s, lab: [sample(kv, lab, s.kv)])
    for ours, name in (
        ("prompt", "vllm:prompt_tokens"),
        ("generation", "vllm:generation_tokens"),
        ("preemptions", "vllm:num_preemptions"),
    ):
        series(
            name,
            "counter",
            lambda s, lab, ours=ours, name=name: [sample(name + "_total", lab, getattr(s, ours) * share)],
        )
        series(name + "_created", "gauge", lambda s, lab, name=name: [sample(name + "_created", lab, 1.7e9)])
    series(
        "vllm:request_success",
        "counter",
        lambda s, lab: [
            sample("vllm:request_success_total", {**lab, "finished_reason": r}, v * share)
            for r, v in s.finished.items()
        ],
    )
    if any(s.prefix_queries is not None for s in models.values()):
        if old:  # V0: a block hit-rate gauge, no counters
            series(
                "vllm:gpu_prefix_cache_hit_rate",
                "gauge",
                lambda s, lab: [
                    sample(
                        "vllm:gpu_prefix_cache_hit_rate",
                        lab,
                        s.prefix_hits / s.prefix_queries if s.prefix_queries else 0.0,
                    )
                ],
            )
        else:
            for name, ours in (
                ("vllm:prefix_cache_queries", "prefix_queries"),
                ("vllm:prefix_cache_hits", "prefix_hits"),
            ):
                series(
                    name,
                    "counter",
                    lambda s, lab, ours=ours, name=name: [
                        sample(name + "_total", lab, (getattr(s, ours) or 0) * share)
                    ],
                )
    if any(s.spec for s in models.values()):
        names = (("vllm:spec_decode_num_draft_tokens", 1), ("vllm:spec_decode_num_accepted_tokens", 2))
        if not old:
            names = (("vllm:spec_decode_num_drafts", 0), *names)
        for name, i in names:
            series(
                name,
                "counter",
                lambda s, lab, name=name, i=i: [sample(name + "_total", lab, s.spec[i] * share)] if s.spec else [],
            )
        if old:
            series(
                "vllm:spec_decode_draft_acceptance_rate",
                "gauge",
                lambda s, lab: (
                    [sample("vllm:spec_decode_draft_acceptance_rate", lab, s.spec[2] / s.spec[1] if s.spec[1] else 0.0)]
                    if s.spec
                    else []
                ),
            )
    for ours, name in (*VLLM_HIST.items(), *VLLM_TOKEN_HIST.items()):
        if old and ours == "itl":
            name = "vllm:time_per_output_token_seconds"
        if old and ours == "tpot":
            continue

        def lines(s, lab, ours=ours, name=name):
            if ours not in s.hists:
                return []
            bounds, cum, total = s.hists[ours]
            return histogram(name, lab, bounds, [c * share for c in cum], total * share)

        series(name, "histogram", lines)
    loras = [s.lora for s in models.values() if s.lora]
    if loras:
        running, waiting, max_lora = loras[0]
        info = [
            sample(
                "vllm:lora_requests_info",
                {"max_lora": str(max_lora), "running_lora_adapters": "", "waiting_lora_adapters": ""},
                1.7e9,
            ),  # an older label set
            sample(
                "vllm:lora_requests_info",
                {
                    "max_lora": str(max_lora),
                    "running_lora_adapters": ",".join(running),
                    "waiting_lora_adapters": ",".join(waiting),
                },
                1.8e9,
            ),
        ]
        out.append(family("vllm:lora_requests_info", "gauge", info, "Running stats on lora requests."))
    return "\n".join(out) + "\n"


def fake_vllm(page: str | list[str], **kw) -> FakeServer:
    pages = [page] if isinstance(page, str) else page
    return FakeServer(
        {
            "/metrics": [Reply(p) for p in pages],
            "/version": Reply({"version": "0.11.0"}),
            "/v1/models": Reply({"object": "list", "data": [{"id": "m", "object": "model"}]}),
        },
        **kw,
    )


def llamacpp_metrics(
    prompt: float,
    predicted: float,
    prompt_s: float,
    predicted_s: float,
    processing: int = 0,
    deferred: int = 0,
    decode_calls: float = 0,
    kv: float | None = None,
    cached: float = 0,
    spec: tuple[float, float, float] = (0, 0, 0),
    busy_per_decode: float = 1.0,
    accepted_per_pos: tuple[float, ...] = (),
) -> str:
    """llama-server `--metrics` page as `server_task_result_metrics::to_metrics()` (tools/server/server-task.cpp)
    writes it: counters first, then gauges (C++ ostream numbers), then the per-draft-position counter when
    speculative decoding accepted anything. `spec`: (drafts, draft tokens, accepted tokens); `kv`: the
    `kv_cache_usage_ratio` gauge of older builds."""

    def num(v):
        return f"{v:g}"

    drafts, draft_tokens, accepted = spec
    rows = [
        ("prompt_tokens_total", "counter", prompt),
        ("prompt_tokens_cached_total", "counter", cached),
        ("prompt_seconds_total", "counter", prompt_s),
        ("tokens_predicted_total", "counter", predicted),
        ("tokens_predicted_seconds_total", "counter", predicted_s),
        ("n_decode_total", "counter", decode_calls),
        ("n_tokens_max", "counter", 0),
        ("spec_decode_num_draft_tokens_total", "counter", draft_tokens),
        ("spec_decode_num_accepted_tokens_total", "counter", accepted),
        ("spec_decode_num_drafts_total", "counter", drafts),
        ("prompt_tokens_seconds", "gauge", 123.4),
        ("predicted_tokens_seconds", "gauge", 45.6),
    ]
    if kv is not None:
        rows.append(("kv_cache_usage_ratio", "gauge", kv))
    rows += [
        ("requests_processing", "gauge", processing),
        ("requests_deferred", "gauge", deferred),
        ("n_busy_slots_per_decode", "gauge", busy_per_decode),
    ]
    page = "".join(f"# HELP llamacpp:{n} {n}\n# TYPE llamacpp:{n} {k}\nllamacpp:{n} {num(v)}\n" for n, k, v in rows)
    if accepted_per_pos:
        name = "llamacpp:spec_decode_num_accepted_tokens_per_pos_total"
        page += f"# HELP {name} Accepted tokens per draft position\n# TYPE {name} counter\n"
        page += "".join(f'{name}{{position="{i}"}} {num(v)}\n' for i, v in enumerate(accepted_per_pos))
    return page


def llamacpp_slots(busy: int, total: int, n_ctx: int = 4096, prompt: int = 16, decoded: int = 0) -> list[dict]:
    """`/slots` as `server_slot::to_json()` writes it: `n_prompt_tokens` is the slot's cached tokens, the decoded
    ones included (no `n_past`); `next_token` is a one-item list."""
    return [
        {
            "id": i,
            "n_ctx": n_ctx,
            "speculative": False,
            "is_processing": i < busy,
            "id_task": i if i < busy else -1,
            "n_prompt_tokens": prompt + decoded if i < busy else 0,
            "n_prompt_tokens_processed": prompt if i < busy else 0,
            "n_prompt_tokens_cache": 0,
            "next_token": [
                {
                    "has_next_token": i < busy,
                    "has_new_line": False,
                    "n_remain": -1,
                    "n_decoded": decoded if i < busy else 0,
                }
            ],
        }
        for i in range(total)
    ]


def llamacpp_props(total: int = 2, alias: str | None = None, path: str = "/models/qwen2.5-1.5b-q4_k_m.gguf") -> dict:
    props = {
        "default_generation_settings": {"n_ctx": 4096, "params": {}},
        "total_slots": total,
        "model_path": path,
        "chat_template": "",
        "build_info": "b6000-abc",
    }
    if alias:
        props["model_alias"] = alias
    return props


def fake_llamacpp(
    metrics: str | list[Reply], *, slots: int = 2, busy: int = 0, api_key: str | None = None, **kw
) -> FakeServer:
    replies = (
        [Reply(m) for m in metrics]
        if isinstance(metrics, list) and metrics and isinstance(metrics[0], str)
        else metrics
        if isinstance(metrics, list)
        else [Reply(metrics)]
    )
    return FakeServer(
        {
            "/health": Reply({"status": "ok"}),
            "/metrics": replies,
            "/slots": Reply(llamacpp_slots(busy, slots)),
            "/props": Reply(llamacpp_props(slots)),
            "/v1/models": Reply({"object": "list", "data": [{"id": "qwen", "object": "model"}]}),
        },
        api_key=api_key,
        protected=("/metrics", "/slots", "/props", "/v1/models"),
        **kw,
    )


LOADING = Reply({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, status=503)
LLAMACPP_PATHS = ("/health", "/metrics", "/slots", "/props", "/v1/models")


def llamacpp_loading(fake: FakeServer) -> None:
    """Every path answers 503 "Loading model" until the model is loaded, /health too (server-http.cpp)."""
    for path in LLAMACPP_PATHS:
        fake.script(path, LOADING)


def fake_ollama(models: list[dict]) -> FakeServer:
    return FakeServer(
        {
            "/api/version": Reply({"version": "0.6.5"}),
            "/api/ps": Reply({"models": models}),
            "/": Reply("Ollama is running"),
        }
    )


def fake_openai(ids: list[str]) -> FakeServer:
    return FakeServer(
        {
            "/v1/models": Reply(
                {
                    "object": "list",
                    "data": [{"id": i, "object": "model", "owned_by": "organization_owner"} for i in ids],
                }
            )
        }
    )
