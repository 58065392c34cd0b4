"""The proxy in front of a real llama-server (tiny random model): what clients get through it is what the server
said, byte for byte, and what it counts is what the server counted.

The model writes gibberish, but the same seed at temperature 0 writes the same gibberish: the direct answer and
the proxied one are compared with only the per-request fields set apart (`id`, `created`, `timings`).
"""

from __future__ import annotations

import json
import re
import time

import httpx
import openai
import pytest

from tests.support import ttft
from tests.support.proxy import ThreadProxy

pytestmark = pytest.mark.realserver

VOLATILE = re.compile(rb'"(id|created|system_fingerprint)":("[^"]*"|\d+)|"(timings)":\{[^}]*\}')
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Tell me about the sea."}], "max_tokens": 12}
SAME = {"temperature": 0, "seed": 42}


def steady(body: bytes) -> bytes:
    return VOLATILE.sub(lambda m: b'"' + (m.group(1) or m.group(3)) + b'":_', body)


def test_raw_http_answers_are_the_servers_byte_for_byte(make_llama_server):
    server = make_llama_server(slots=1)  # one slot: the direct and the proxied request reuse the same prompt cache
    # a connection per request: llama-server (cpp-httplib) closes a kept one after a few requests, and httpx
    # does not retry a POST that met a connection closed under it
    with (
        ThreadProxy(server.url) as proxy,
        httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as client,
    ):
        for path, body in (
            ("/v1/chat/completions", {**CHAT, **SAME}),
            ("/v1/chat/completions", {**CHAT, **SAME, "stream": True}),
            ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 12, **SAME, "stream": True}),
            ("/completion", {"prompt": "Once upon a time", "n_predict": 12, **SAME}),
        ):
            client.post(server.url + path, json=body)  # the prompt cache warm: the next two reuse it alike
            direct = client.post(server.url + path, json=body)
            proxied = client.post(proxy.url + path, json=body)
            assert proxied.status_code == direct.status_code == 200
            assert steady(proxied.content) == steady(direct.content), path
            assert proxied.headers["content-type"] == direct.headers["content-type"]
        for path in ("/health", "/v1/models", "/props", "/slots"):
            assert client.get(proxy.url + path).status_code == client.get(server.url + path).status_code


def test_the_openai_client_gets_the_same_answer_and_the_counters_are_the_servers(make_llama_server):
    server = make_llama_server(slots=1)
    direct = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    with ThreadProxy(server.url) as proxy:
        proxied = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
        direct.chat.completions.create(**CHAT, **SAME)  # the prompt cache warm
        a = direct.chat.completions.create(**CHAT, **SAME)
        before = server.metrics()
        b = proxied.chat.completions.create(**CHAT, **SAME)
        assert b.choices[0].message.content == a.choices[0].message.content
        assert b.usage == a.usage
        sent = time.monotonic()
        first = None
        pieces = []
        stream = proxied.chat.completions.create(**CHAT, **SAME, stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.monotonic() - sent
                pieces.append(chunk.choices[0].delta.content)
        assert "".join(pieces) == a.choices[0].message.content
        after = server.metrics()
        records = proxy.records(2)
        assert [r.outcome for r in records] == ["ok", "ok"] and records[1].streamed
        # the proxy's counts are the server's own: usage, and the server's /metrics counters over the same requests
        generated = after["tokens_predicted_total"] - before["tokens_predicted_total"]
        processed = after["prompt_tokens_total"] - before["prompt_tokens_total"]
        cached = after.get("prompt_tokens_cached_total", 0) - before.get("prompt_tokens_cached_total", 0)
        assert sum(r.output_tokens or 0 for r in records) == generated
        assert sum(r.prompt_tokens or 0 for r in records) == processed + cached
        assert all(r.counted == "server" for r in records)
        page = proxy.page()
        assert (
            f'llm_proxy_generation_tokens_total{{model="tiny",api="openai_chat",counted="server"}} {generated}' in page
        )
        # the proxy saw the first token before the client did
        assert first is not None and records[1].ttft_s is not None and records[1].ttft_s <= first
        print(f"TTFT: proxy {1000 * records[1].ttft_s:.2f} ms, client {1000 * first:.2f} ms")


def test_the_proxys_ttft_per_request_is_the_clients_own_within_1_ms(make_llama_server):
    """Raw HTTP stamped at the socket and the `openai` client stamped at its httpx transport (before the SDK
    parses a byte), each request paired with the proxy's own TTFT of it (tests/support/ttft.py)."""
    n = 20
    server = make_llama_server(slots=1, extra=("-t", "1"))  # one thread: its spinning leaves the proxy a core
    # a prompt evaluated afresh each time: its first token comes a few ms after the answer's head, when the SDK is
    # already waiting on its socket (a stamp is taken when the client reads, not when the bytes arrived; with a
    # cached prompt the token could wait in the socket while the SDK still builds its stream object)
    prompt = [{"role": "user", "content": "Tell me about the sea and the waves. " * 100}]
    body = {**CHAT, **SAME, "messages": prompt, "max_tokens": 4, "stream": True, "cache_prompt": False}
    with ttft.prompt_switching(), ThreadProxy(server.url) as proxy:
        raw = [
            ttft.raw_request(proxy.url, "/v1/chat/completions", json.dumps(body).encode(), "openai_chat")
            for _ in range(n)
        ]
        ttft.check(ttft.pair(raw, proxy.records(n)), "raw HTTP, llama-server")
        transport = ttft.StampingTransport()
        client = openai.OpenAI(
            base_url=proxy.url + "/v1", api_key="x", max_retries=0, http_client=httpx.Client(transport=transport)
        )
        for _ in range(n):
            sdk = {k: v for k, v in body.items() if k != "cache_prompt"}
            for _chunk in client.chat.completions.create(**sdk, extra_body={"cache_prompt": False}):
                pass
        ttft.check(ttft.pair(transport.stamps, proxy.records(n)), "openai client, llama-server")
