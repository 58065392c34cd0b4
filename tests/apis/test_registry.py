"""The API table: every row reachable by its route, the probe's names, reading a request body."""

from typing import get_args

import pytest

from telegraf_llm_input.apis import APIS, PROBE_APIS, classify, request_info
from telegraf_llm_input.probenames import ProbeApi


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/api/generate", "ollama_generate"),
        ("POST", "/api/chat", "ollama_chat"),
        ("POST", "/api/embed", "ollama_embed"),
        ("POST", "/v1/chat/completions", "openai_chat"),
        ("post", "/v1/chat/completions?stream=1", "openai_chat"),
        ("POST", "/v1/completions", "openai_completions"),
        ("POST", "/v1/embeddings", "openai_embeddings"),
        ("POST", "/v1/responses", "openai_responses"),
        ("POST", "/completion", "llamacpp_completion"),
        ("POST", "/api/v0/chat/completions", "lmstudio_chat"),
    ],
)
def test_classify(method, path, name):
    assert classify(method, path) is APIS[name]


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/ps"), ("GET", "/v1/models"), ("GET", "/api/chat")])
def test_not_an_api(method, path):
    assert classify(method, path) is None


def test_every_route_belongs_to_one_api_and_every_row_reads():
    routes = [(api.method, p) for api in APIS.values() for p in api.paths]
    assert len(routes) == len(set(routes))
    for api in APIS.values():
        assert api.interpret({"unknown": 1}).error is False
        assert api.interpret([1]).error is True


def test_probe_apis_are_the_config_literal_and_build_their_bodies():
    assert set(PROBE_APIS) == set(get_args(ProbeApi))
    for name, api in PROBE_APIS.items():
        assert api.build is not None and api.kind == "generate", name


def test_request_info_stream_defaults():
    assert request_info(APIS["ollama_chat"], b'{"model": "qwen3:0.6b"}') == ("qwen3:0.6b", True)
    assert request_info(APIS["ollama_chat"], b'{"model": "m", "stream": false}').stream is False
    assert request_info(APIS["openai_chat"], b'{"model": "m"}').stream is False
    assert request_info(APIS["openai_chat"], b'{"model": "m", "stream": true}').stream is True
    assert request_info(APIS["ollama_embed"], b'{"model": "m", "stream": true}').stream is False
    assert request_info(APIS["openai_chat"], b"not json") == (None, False)
    assert request_info(APIS["openai_chat"], b'{"model": 3}').model is None
