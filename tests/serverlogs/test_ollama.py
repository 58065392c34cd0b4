"""Ollama's log lines (formatted as gin and slog write them, tests/fakes/serverlogs.py) -> events."""

from __future__ import annotations

import time

import pytest

from telegraf_llm_input.apis import ollama as ollama_api
from telegraf_llm_input.apis.ollama import PROBE_MARK
from telegraf_llm_input.serverlogs.base import EMBED, GENERATE, ModelLoad, Request
from telegraf_llm_input.serverlogs.ollama import Parser, go_duration_ms
from tests.fakes.serverlogs import gin_line, go_duration, runner_started_line


@pytest.mark.parametrize(
    "text, ms",
    [
        ("0s", 0.0),
        ("850ns", 0.00085),
        ("512.3µs", 0.5123),
        ("512.3μs", 0.5123),
        ("4.2ms", 4.2),
        ("47.44538475s", 47445.38475),
        ("1m2.5s", 62500.0),
        ("1h2m5s", 3725000.0),
    ],
)
def test_go_durations(text, ms):
    assert go_duration_ms(text) == pytest.approx(ms, rel=1e-12)


@pytest.mark.parametrize("text", ["", "5", "1.5x", "s", "12 ms", "-"])
def test_not_durations(text):
    assert go_duration_ms(text) is None


@pytest.mark.parametrize("ns", [1, 999, 1_000, 123_456, 999_999_999, 1_000_000_000, 59_999_999_999, 61 * 10**9])
def test_durations_round_trip_through_gos_format(ns):
    assert go_duration_ms(go_duration(ns)) == pytest.approx(ns / 1e6, rel=1e-12)


def test_the_issues_line():
    line = '[GIN] 2026/08/13 - 10:15:40 | 200 |  47.44538475s |       127.0.0.1 | POST     "/api/chat"'
    [event] = Parser().feed(line)
    assert isinstance(event, Request)
    assert (event.api, event.status, event.path) == (GENERATE, 200, "/api/chat")
    assert event.e2e_ms == pytest.approx(47445.38475)
    assert event.logged_at == time.mktime((2026, 8, 13, 10, 15, 40, 0, 0, -1))


@pytest.mark.parametrize(
    "path, api",
    [
        ("/api/generate", GENERATE),
        ("/api/chat", GENERATE),
        ("/v1/chat/completions", GENERATE),
        ("/v1/completions", GENERATE),
        ("/api/embed", EMBED),
        ("/api/embeddings", EMBED),
        ("/v1/embeddings", EMBED),
        ("/v1/responses", GENERATE),
        ("/api/chat?stream=false", GENERATE),
    ],
)
def test_inference_paths(path, api):
    [event] = Parser().feed(gin_line(500, 12_000_000, path))
    assert isinstance(event, Request) and event.api == api and event.status == 500


def test_every_ollama_api_the_probe_and_proxy_know_is_counted_from_the_log():
    """One list of Ollama's inference routes (apis/): a row added there is counted here without a second edit."""
    for api in ollama_api.APIS:
        for path in api.paths:
            [event] = Parser().feed(gin_line(200, 1_000_000, path))
            assert isinstance(event, Request) and event.api == api.kind, path


@pytest.mark.parametrize(
    "path, method",
    [
        ("/api/ps", "GET"),
        ("/api/version", "GET"),
        ("/api/tags", "GET"),
        ("/", "HEAD"),
        ("/api/pull", "POST"),
        ("/api/show", "POST"),
        ("/v1/models", "GET"),
        ("/api/chat", "GET"),
    ],
)
def test_scrapes_and_management_are_not_requests(path, method):
    assert Parser().feed(gin_line(200, 100_000, path, method)) == []


def test_coloured_line_from_a_terminal():
    line = '[GIN] 2026/08/13 - 10:15:40 |\x1b[97;42m 200 \x1b[0m|    1.234567ms |       127.0.0.1 |\x1b[97;46m POST    \x1b[0m "/api/embed"'
    [event] = Parser().feed(line)
    assert isinstance(event, Request) and event.api == EMBED and event.e2e_ms == pytest.approx(1.234567)


def test_ipv6_client_and_an_error_message_after_the_path():
    line = gin_line(404, 2_000_000, "/api/chat", client="::1").rstrip("\n") + "Error #01: model not found\n"
    [event] = Parser().feed(line)
    assert isinstance(event, Request) and event.status == 404


def test_runner_started():
    [event] = Parser().feed(runner_started_line(2.51))
    assert event == ModelLoad(2.51)


@pytest.mark.parametrize(
    "line",
    [
        'time=2026-08-13T10:15:38.412Z level=INFO source=server.go:421 msg="starting llama server" cmd="..."',
        'time=2026-08-13T10:15:38.412Z level=INFO source=routes.go:1234 msg="Listening on 127.0.0.1:11434"',
        "",
        "[GIN-debug] POST   /api/chat                 --> github.com/ollama/ollama/server.(*Server).ChatHandler",
    ],
)
def test_other_lines(line):
    assert Parser().feed(line) == []


def test_a_probes_request_is_marked_by_its_query():
    [probe] = Parser().feed(gin_line(200, 1_000_000, f"/api/chat?{PROBE_MARK}"))
    [user] = Parser().feed(gin_line(200, 1_000_000, "/api/chat?x=telegraf-llm-input-probe"))
    assert probe.probe and probe.path == "/api/chat" and not user.probe
