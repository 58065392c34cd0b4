"""The probe against the scripted streaming server: measured values vs the script, error classes.

Timing tolerances hold on a loaded 2-core machine: a measured time can never be earlier than the
scripted one (the server's schedule starts after our clock does), and the upper margins are wide.
Token counts and error classes are exact.
"""

import asyncio

import pytest

from telegraf_llm_input.config import parse_config
from telegraf_llm_input.probe.runner import ProbeRunner, join_url, request_body
from tests.fakes.streaming import Script, StreamingServer
from tests.support.procs import free_port

TTFT_MS = 200.0
INTERVAL_MS = 20.0
SLACK_MS = 1000.0  # upper margin for a busy machine
TPOT_TOL_MS = 10.0


def target(url, **probe):
    extra = probe.pop("_target", {})
    raw = {"url": url, "probe": {"enabled": True, **probe}, **extra}
    return parse_config({"targets": [raw]}).targets[0]


def run(url, **probe):
    async def go():
        runner = ProbeRunner(target(url, **probe))
        try:
            return await runner.run_once()
        finally:
            await runner.aclose()

    return asyncio.run(go())


@pytest.fixture
def server():
    with StreamingServer(Script(ttft_s=TTFT_MS / 1000, interval_s=INTERVAL_MS / 1000)) as srv:
        yield srv


def assert_ttft(r, scripted_ms=TTFT_MS):
    assert r.ttft_ms is not None and scripted_ms <= r.ttft_ms < scripted_ms + SLACK_MS


def test_openai_chat_separate_usage_chunk(server):
    server.update(answer=tuple(f" {i}" for i in range(20)))
    out = run(server.url)
    r = out.result
    assert r.success and r.error is None and r.http_status == 200
    assert_ttft(r)
    assert r.ttfa_ms == r.ttft_ms and r.reasoning is False
    assert r.output_tokens == 20 and r.output_tokens_source == "usage" and r.prompt_tokens == 17
    assert abs(r.tpot_ms - INTERVAL_MS) < TPOT_TOL_MS
    assert r.e2e_ms >= TTFT_MS + 19 * INTERVAL_MS
    assert out.model == "fake-model"
    (post,) = server.posts()
    assert post.path == "/v1/chat/completions"
    assert post.body["stream"] is True and post.body["stream_options"] == {"include_usage": True}
    assert post.body["model"] == "fake-model" and post.body["max_tokens"] == 64 and post.body["temperature"] == 0
    # type auto: is it Ollama or LM Studio (which load what a request names)? Neither: the model from /v1/models.
    assert [r.path for r in server.requests if r.method == "GET"] == ["/api/ps", "/api/v0/models", "/v1/models"]


def test_usage_in_final_choice_chunk_with_llamacpp_timings(server):
    server.update(usage="final_chunk", prefill_ms=12.5, cache_tokens=9)
    r = run(server.url).result
    assert r.success and r.output_tokens == 10 and r.output_tokens_source == "usage"
    assert r.server_prefill_ms == 12.5 and r.cache_tokens == 9
    assert r.server_decode_tokens_per_s == pytest.approx(1000 / INTERVAL_MS)


@pytest.mark.parametrize("style", ["reasoning", "reasoning_content", "think_tags"])
def test_reasoning_first_then_answer(server, style):
    server.update(reasoning=tuple(f"r{i}" for i in range(10)), reasoning_style=style, reasoning_tokens_in_usage=True)
    r = run(server.url).result
    assert r.success and r.reasoning is True
    assert_ttft(r)
    tags = 1 if style == "think_tags" else 0  # `<think>` is one token; the answer starts after `</think>`
    scripted_ttfa = TTFT_MS + (10 + 2 * tags) * INTERVAL_MS
    assert scripted_ttfa <= r.ttfa_ms < scripted_ttfa + SLACK_MS
    assert abs(r.reasoning_ms - (scripted_ttfa - TTFT_MS)) < 150
    assert r.output_tokens == 10 + 10 + 2 * tags
    assert r.reasoning_tokens == (0 if style == "think_tags" else 10)


def test_missing_done_marker_still_succeeds(server):
    server.update(done_marker=False)
    r = run(server.url).result
    assert r.success and r.output_tokens == 10


def test_connection_cut_mid_stream(server):
    server.update(cut_after=4)
    r = run(server.url).result
    assert not r.success and r.error == "bad_stream" and r.http_status == 200
    assert_ttft(r)
    assert r.output_tokens == 4 and r.output_tokens_source == "chunks"


@pytest.mark.parametrize("status, error", [(500, "http_5xx"), (503, "http_5xx"), (401, "http_4xx"), (404, "http_4xx")])
def test_http_errors(server, status, error):
    server.update(status=status)
    r = run(server.url).result
    assert not r.success and r.error == error and r.http_status == status
    assert r.ttft_ms is None


def test_malformed_json_chunk(server):
    server.update(malformed_at=3)
    r = run(server.url).result
    assert r.error == "bad_stream" and "malformed" in r.detail


def test_no_tokens_is_empty(server):
    server.update(answer=())
    r = run(server.url).result
    assert not r.success and r.error == "empty"


def test_connect_refused():
    r = run(f"http://127.0.0.1:{free_port()}").result
    assert not r.success and r.error == "connect" and r.http_status is None


def test_timeout_keeps_partial_measurement(server):
    server.update(ttft_s=0.1, interval_s=0.5, answer=tuple("abcdefgh"))
    r = run(server.url, timeout="700ms").result
    assert not r.success and r.error == "timeout"
    assert_ttft(r, 100)
    assert r.e2e_ms >= 600  # the timeout (700 ms) runs from before the request was written


def test_configured_model_skips_discovery(server):
    out = run(server.url, model="my-model", _target={"type": "vllm"})
    assert out.result.success and out.model == "my-model"
    assert [r.method for r in server.requests] == ["POST"]
    assert server.posts()[0].body["model"] == "my-model"


def test_openai_completions(server):
    r = run(server.url, api="openai_completions", prompt="Say hi").result
    assert r.success and r.output_tokens == 10 and r.prompt_tokens == 17
    assert_ttft(r)
    post = server.posts()[0]
    assert post.path == "/v1/completions" and post.body["prompt"] == "Say hi" and post.body["stream"] is True


def test_ollama_native_ndjson(server):
    server.update(
        ollama_version="0.12.6",
        models=("qwen3:0.6b", "llama3.2:latest"),
        loaded_models=("llama3.2:latest",),
        load_ms=1500.0,
        prefill_ms=40.0,
        reasoning=("hm", "m"),
    )
    server.ollama.release("llama3.2:latest", -1)  # kept loaded forever: probed at any time (test_runner_memory)
    out = run(server.url, api="ollama", max_tokens=32)
    r = out.result
    assert r.success and r.reasoning is True
    assert_ttft(r)
    assert r.ttfa_ms >= TTFT_MS + 2 * INTERVAL_MS
    assert r.output_tokens == 12 and r.output_tokens_source == "server" and r.prompt_tokens == 17
    assert r.load_ms == 1500.0 and r.server_prefill_ms == 40.0
    assert r.server_decode_tokens_per_s == pytest.approx(1000 / INTERVAL_MS)
    assert out.model == "llama3.2:latest"  # the loaded model: probing another would load it
    post = server.posts()[0]
    assert post.path == "/api/chat" and post.body["options"] == {"temperature": 0.0, "num_predict": 32}
    assert post.body["model"] == "llama3.2:latest"


def test_llamacpp_completion_with_timings(server):
    server.update(cache_tokens=5, prefill_ms=3.5)
    r = run(server.url, api="llamacpp").result
    assert r.success and r.output_tokens == 10 and r.output_tokens_source == "server" and r.prompt_tokens == 17
    assert_ttft(r)
    assert abs(r.tpot_ms - INTERVAL_MS) < TPOT_TOL_MS
    assert r.server_prefill_ms == 3.5 and r.cache_tokens == 5
    post = server.posts()[0]
    assert post.path == "/completion" and post.body["n_predict"] == 64 and post.body["stream"] is True


def test_bearer_token_and_headers_are_sent(server):
    run(server.url, _target={"bearer_token": "s3cret", "headers": {"X-Team": "judge"}})
    for req in server.requests:
        assert req.headers.get("Authorization") == "Bearer s3cret" and req.headers.get("X-Team") == "judge"


@pytest.mark.parametrize("key", [None, "", " "])
def test_an_unset_empty_or_blank_bearer_token_sends_no_authorization(server, monkeypatch, key):
    if key is None:
        monkeypatch.delenv("LLAMA_API_KEY", raising=False)
    else:
        monkeypatch.setenv("LLAMA_API_KEY", key)
    assert run(server.url, _target={"bearer_token": "${LLAMA_API_KEY:-}"}).result.success
    assert server.posts() and all("Authorization" not in req.headers for req in server.requests)


def test_discovery_failure_sends_without_model(server):
    server.update(models=())
    out = run(server.url)
    assert out.result.success and out.model is None and "model" not in server.posts()[0].body


def test_url_join_and_bodies():
    assert join_url("http://h:8000/", "/v1/models") == "http://h:8000/v1/models"
    assert join_url("http://h:8000/v1", "/v1/chat/completions") == "http://h:8000/v1/chat/completions"
    assert join_url("http://h:11434/v1/", "/api/ps") == "http://h:11434/api/ps"
    probe = target("http://h:1", messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]).probe
    assert request_body(probe, None)["messages"][0]["role"] == "system"
