"""Static pages for benches: a vLLM and a llama.cpp server as `bench.pageserver.PageServer` serves them.

The metrics pages are the recorded fixtures of tests/fixtures/prometheus; the JSON endpoints come from the test
fakes (tests/fakes/llm.py), so benches and tests read the same wire format.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes.llm import llamacpp_props, llamacpp_slots

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "prometheus"
PROM = "text/plain; version=0.0.4; charset=utf-8"
JSON = "application/json"
VLLM_PAGE = (FIXTURES / "vllm.txt").read_text()
LLAMACPP_PAGE = (FIXTURES / "llamacpp.txt").read_text()


def _json(value) -> tuple[str, str]:
    return JSON, json.dumps(value)


def vllm_pages() -> dict[str, tuple[str, str]]:
    return {
        "/metrics": (PROM, VLLM_PAGE),
        "/version": _json({"version": "0.9.1"}),
        "/health": (JSON, ""),
        "/v1/models": _json({"object": "list", "data": [{"id": "Qwen/Qwen2.5-7B-Instruct", "object": "model"}]}),
    }


def llamacpp_pages() -> dict[str, tuple[str, str]]:
    return {
        "/metrics": (PROM, LLAMACPP_PAGE),
        "/health": _json({"status": "ok"}),
        "/slots": _json(llamacpp_slots(busy=1, total=2)),
        "/props": _json(llamacpp_props(2)),
        "/v1/models": _json({"object": "list", "data": [{"id": "qwen", "object": "model"}]}),
    }
