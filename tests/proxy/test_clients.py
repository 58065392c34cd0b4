"""Real client libraries through the proxy (the `ollama` and `openai` Python packages), an upstream speaking the
real wire formats (tests/fakes/streaming.py), and the agent reading the proxy's page with `type: auto`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import ollama
import openai
import pytest

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.processors import build_processors
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv
from tests.fakes.streaming import Script, StreamingServer
from tests.support import ttft
from tests.support.proxy import ThreadProxy

MESSAGES = [{"role": "user", "content": "hi"}]


def test_the_ollama_client_tokens_load_duration_and_ttft_are_the_fakes():
    script = Script(ttft_s=0.15, interval_s=0.01, load_ms=1200.0, prompt_tokens=26)
    with StreamingServer(script) as fake, ThreadProxy(fake.url) as proxy:
        client = ollama.Client(host=proxy.url)
        sent = time.monotonic()
        first = None
        for part in client.chat(model="fake-model", messages=MESSAGES, stream=True):
            if first is None and part.message.content:
                first = time.monotonic() - sent
            last = part
        (m,) = proxy.records(1)
        assert last.done and (m.api, m.model, m.outcome) == ("ollama_chat", "fake-model", "ok")
        assert m.output_tokens == last.eval_count == script.completion_tokens and m.counted == "server"
        assert m.prompt_tokens == last.prompt_eval_count == 26
        assert m.load_s == last.load_duration / 1e9 == 1.2
        # the first token leaves the fake at ttft_s after it read the request; the proxy sees it before the client
        assert first is not None and script.ttft_s <= m.ttft_s <= first
        print(f"TTFT: fake {1000 * script.ttft_s:.1f} ms, proxy {1000 * m.ttft_s:.2f} ms, client {1000 * first:.2f} ms")
        page = proxy.page()
        assert 'llm_proxy_load_duration_seconds_sum{model="fake-model",api="ollama_chat"} 1.2' in page
        assert (
            f'llm_proxy_generation_tokens_total{{model="fake-model",api="ollama_chat",counted="server"}} {script.completion_tokens}'
            in page
        )


def test_the_openai_client_streaming_and_not():
    script = Script(ttft_s=0.05, interval_s=0.005, reasoning=("a", "b"), reasoning_style="reasoning_content")
    with StreamingServer(script) as fake, ThreadProxy(fake.url) as proxy:
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-test", max_retries=0)
        chunks = list(client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
        assert chunks[-1].usage is not None
        (m,) = proxy.records(1)
        assert m.output_tokens == chunks[-1].usage.completion_tokens and m.counted == "server"
        assert m.ttft_s is not None and m.ttfa_s is not None and m.ttfa_s > m.ttft_s  # reasoning first
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-test"  # as the client spelled it
        assert 'outcome="ok",code="200"' in proxy.page()


def test_the_agent_reads_the_proxy_with_type_auto():
    script = Script(ttft_s=0.02, interval_s=0.002)
    with StreamingServer(script) as fake, ThreadProxy(fake.url) as proxy:
        config = parse_config(
            {
                "targets": [{"url": proxy.url, "type": "auto", "name": "px", "process": {"enabled": False}}],
                "host": {"enabled": False},
                "gpu": {"enabled": False},
            }
        )
        agent = Agent(build_sources(config, SourceEnv()), [], deadline_s=5.0, processors=build_processors(config))
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)

        def chat() -> None:
            list(client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))

        async def failing(status: int, error: type[Exception]) -> None:
            fake.update(status=status)
            with pytest.raises(error):
                await asyncio.to_thread(chat)

        async def scenario():
            t0 = time.time_ns()
            # a series appears with its first request (as on any Prometheus page, its first count gives no rate)
            await asyncio.to_thread(chat)
            await failing(500, openai.InternalServerError)
            await failing(400, openai.BadRequestError)
            await asyncio.to_thread(proxy.records, 3)
            await agent.gather_once(t0)  # the baseline
            fake.update(status=200)
            for _ in range(3):
                await asyncio.to_thread(chat)
            await failing(500, openai.InternalServerError)
            await failing(400, openai.BadRequestError)
            await asyncio.to_thread(proxy.records, 8)
            second = await agent.gather_once(t0 + 10 * 10**9)
            await agent.close()
            return second

        points = [m for m in asyncio.run(scenario()) if m.measurement == "llm_server"]
        (point,) = points
        assert point.tags["server_type"] == "proxy" and point.tags["model"] == "fake-model"
        f = point.fields
        assert f["requests_total"] == 8 and f["requests_per_s"] == 0.5
        assert f["generation_tokens_total"] == 4 * script.completion_tokens
        assert f["generation_tokens_per_s"] == 0.3 * script.completion_tokens
        assert f["prompt_tokens_total"] == 4 * script.prompt_tokens
        assert f["requests_finished_ok_total"] == 4 and f["requests_finished_http_5xx_total"] == 2
        assert f["requests_finished_http_4xx_total"] == 2
        # as the Ollama log source counts them: a 5xx is the server's failure, a 4xx the caller's mistake
        assert f["request_errors_total"] == 2 and f["error_ratio"] == 0.2
        assert f["client_error_ratio"] == 0.2
        assert f["ttft_p50_ms"] >= 20.0 and f["e2e_p50_ms"] >= 20.0  # the fake's first token is due at 20 ms
        assert "tpot_p50_ms" in f and "itl_p95_ms" in f and "ttfa_p50_ms" in f


def test_top_shows_the_proxy(tmp_path):
    config = tmp_path / "config.yaml"
    with StreamingServer(Script(ttft_s=0.01, interval_s=0.001)) as fake, ThreadProxy(fake.url) as proxy:
        config.write_text(
            f"targets: [{{url: '{proxy.url}', name: px}}]\nhost: {{enabled: false}}\ngpu: {{enabled: false}}\n"
        )
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                list(client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
                stop.wait(0.05)

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            argv = [
                sys.executable,
                "-m",
                "telegraf_llm_input",
                "top",
                "-c",
                str(config),
                "--count",
                "3",
                "--interval",
                "1s",
            ]
            env = dict(os.environ, COLUMNS="120", LINES="40", TERM="dumb")
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        finally:
            stop.set()
            thread.join()
    last = r.stdout.rsplit("telegraf-llm-input top", 1)[-1]
    assert "px  proxy  fake-model" in last and "UP" in last
    assert "ttft p50" in last and "req " in last and "gen " in last


def test_the_proxys_ttft_per_request_is_the_clients_own_within_1_ms():
    """Raw HTTP stamped at the socket, and the `ollama` client stamped at its transport, against the Ollama fake:
    each request's TTFT from the proxy paired with the client's (tests/support/ttft.py says what each covers).
    The proxy's thread, the fake's and the client share one interpreter here: threads hand the GIL over at once
    (as separate processes would run), not after the default 5 ms."""
    n = 20
    script = Script(ttft_s=0.01, interval_s=0.002, answer=tuple(f" {i}" for i in range(5)))
    body = json.dumps({"model": "fake-model", "messages": MESSAGES, "stream": True}).encode()
    with ttft.prompt_switching(), StreamingServer(script) as fake, ThreadProxy(fake.url) as proxy:
        raw = [ttft.raw_request(proxy.url, "/api/chat", body, "ollama_chat") for _ in range(n)]
        ttft.check(ttft.pair(raw, proxy.records(n)), "raw HTTP, Ollama fake")
        transport = ttft.StampingTransport()
        client = ollama.Client(host=proxy.url, transport=transport)
        for _ in range(n):
            for _part in client.chat(model="fake-model", messages=MESSAGES, stream=True):
                pass
        ttft.check(ttft.pair(transport.stamps, proxy.records(n)), "ollama client, Ollama fake")
