"""LM Studio's REST API (`/api/v0/models`) and mlx_lm.server (OpenAI-compatible), against fakes that answer
with the shapes of LM Studio's documentation and mlx_lm's server."""

import json
from pathlib import Path

import pytest

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.probe.measure import StreamMeasure
from telegraf_llm_input.schema import lookup
from tests.fakes.server import FakeServer, Reply
from tests.servers.test_servers import only, scrape

MODELS = json.loads(
    (Path(__file__).resolve().parent.parent / "fixtures" / "lmstudio" / "api-v0-models.json").read_text()
)
V1_MODELS = {
    "object": "list",
    "data": [{"id": m["id"], "object": "model", "owned_by": "organization_owner"} for m in MODELS["data"]],
}


def fake_lmstudio() -> FakeServer:
    return FakeServer({"/api/v0/models": Reply(MODELS), "/v1/models": Reply(V1_MODELS)})


@pytest.mark.parametrize("kind", ["lmstudio", "auto"])
def test_lmstudio_loaded_models_with_quantization_and_context(kind):
    with fake_lmstudio() as fake:
        [metrics] = scrape(TargetConfig(url=fake.url, type=kind), [0])
    server = only(metrics)
    assert server.tags["server_type"] == "lmstudio" and server.tags["model"] == "meta-llama-3.1-8b-instruct"
    assert server.fields["up"] == 1 and server.fields["models_loaded"] == 1
    loaded = only(metrics, "llm_model_loaded")  # only the loaded one, not the two on disk
    assert loaded.tags["model"] == "meta-llama-3.1-8b-instruct"
    assert loaded.tags["quantization"] == "Q4_K_M" and loaded.tags["format"] == "gguf"
    assert loaded.fields == {"max_context_length": 131072, "loaded": 1}
    for name in loaded.fields:
        assert lookup("llm_model_loaded", name) is not None, name


def test_lmstudio_with_nothing_loaded_is_up_with_zero_models():
    nothing = {"object": "list", "data": [dict(m, state="not-loaded") for m in MODELS["data"]]}
    with FakeServer({"/api/v0/models": Reply(nothing)}) as fake:
        [metrics] = scrape(TargetConfig(url=fake.url, type="lmstudio"), [0])
    assert not [m for m in metrics if m.measurement == "llm_model_loaded"]
    assert only(metrics).fields["models_loaded"] == 0 and only(metrics).fields["up"] == 1


def test_mlx_lm_server_is_openai_compatible():
    # mlx_lm.server's /v1/models: {"object": "list", "data": [{"id", "object": "model", "created"}]}
    mlx = {
        "object": "list",
        "data": [{"id": "mlx-community/Qwen2.5-7B-Instruct-4bit", "object": "model", "created": 1733100000}],
    }
    with FakeServer({"/v1/models": Reply(mlx)}) as fake:
        [named] = scrape(TargetConfig(url=fake.url, type="mlx"), [0])
        [auto] = scrape(TargetConfig(url=fake.url, type="auto"), [0])
    assert only(named).tags["server_type"] == "mlx" and only(named).fields["up"] == 1
    assert only(named).tags["model"] == "mlx-community/Qwen2.5-7B-Instruct-4bit"
    assert only(auto).tags["server_type"] == "openai"


def test_openai_server_without_lmstudio_api_is_not_lmstudio():
    with FakeServer({"/v1/models": Reply(V1_MODELS)}) as fake:
        [metrics] = scrape(TargetConfig(url=fake.url, type="auto"), [0])
    assert {m.tags["server_type"] for m in metrics if m.measurement == "llm_server"} == {"openai"}
    assert not [m for m in metrics if m.measurement == "llm_model_loaded"]


def test_lmstudio_stats_are_the_probes_server_side_fields():
    # The last object of an LM Studio /api/v0/chat/completions answer (docs: stats, model_info, runtime).
    m = StreamMeasure("lmstudio", 0, http_status=200)
    m.feed(
        100_000_000,
        json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": "granite",
                "choices": [{"index": 0, "delta": {"content": "1 2 3"}, "finish_reason": None}],
            }
        ),
    )
    m.feed(
        300_000_000,
        json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": "granite",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 24, "completion_tokens": 53, "total_tokens": 77},
                "stats": {
                    "tokens_per_second": 51.43709529007664,
                    "time_to_first_token": 0.111,
                    "generation_time": 0.954,
                    "stop_reason": "eosFound",
                },
                "model_info": {"arch": "granite", "quant": "Q4_K_M", "format": "gguf", "context_length": 4096},
            }
        ),
    )
    m.feed(301_000_000, "[DONE]")
    r = m.finish(301_000_000)
    assert r.success and r.output_tokens == 53
    assert r.server_prefill_ms == pytest.approx(111.0)
    assert r.server_decode_tokens_per_s == pytest.approx(51.43709529007664)


def test_lmstudio_probe_posts_an_openai_chat_body_to_the_rest_api():
    from telegraf_llm_input.apis import PROBE_APIS
    from telegraf_llm_input.config.probe import ProbeConfig
    from telegraf_llm_input.probe.runner import request_body

    body = request_body(ProbeConfig(enabled=True, api="lmstudio"), "meta-llama-3.1-8b-instruct")
    assert PROBE_APIS["lmstudio"].paths[0] == "/api/v0/chat/completions"
    assert body["stream"] is True and body["messages"][0]["role"] == "user"
    assert body["model"] == "meta-llama-3.1-8b-instruct"
