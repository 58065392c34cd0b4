"""The llm_probe source inside the real agent loop: background probing, results at the next gather."""

import asyncio
import logging
import sys
import time

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.lineprotocol import encode_batch
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv
from telegraf_llm_input.sources.probe import SWITCH_INTERVAL_S, ProbeSource
from tests.fakes.streaming import Script, StreamingServer


def config(url, **probe):
    return parse_config(
        {
            "host": {"enabled": False},
            "targets": [
                {
                    "url": url,
                    "name": "box-a",
                    "tags": {"gpu_box": "1"},
                    "bearer_token": "tok-SECRET-123",
                    "probe": probe,
                }
            ],
        }
    )


async def wait_for(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return False


async def gather_after_probes(cfg, n):
    """Gather once (starts the probes), wait until n probes finished, gather again: its metrics."""
    (source,) = [s for s in build_sources(cfg, SourceEnv()) if isinstance(s, ProbeSource)]
    agent = Agent([source], [], deadline_s=1.0)
    await agent.gather_once()
    assert await wait_for(lambda: source.probes >= n)
    metrics = await agent.gather_once()
    await agent.close()
    return metrics


def probes(metrics):
    return [m for m in metrics if m.measurement == "llm_probe"]


def test_disabled_probe_sends_no_request_at_all():
    with StreamingServer(Script(ttft_s=0.0, interval_s=0.0)) as srv:
        cfg = config(srv.url)  # enabled defaults to false
        # type prometheus: the server source asks GET /metrics only, so any other request is the probe's.
        cfg.targets[0].type = "prometheus"
        sources = build_sources(cfg, SourceEnv())
        assert not any(isinstance(s, ProbeSource) for s in sources)

        async def go():
            agent = Agent(sources, [], deadline_s=1.0)
            for _ in range(3):
                metrics = await agent.gather_once()
                assert probes(metrics) == []
                await asyncio.sleep(0.1)
            await agent.close()

        asyncio.run(go())
        # The server source still scrapes the target (GET /metrics and friends); the probe sent nothing:
        # no completion request and no model discovery of its own.
        assert srv.requests and {(r.method, r.path) for r in srv.requests} == {("GET", "/metrics")}


def test_results_arrive_at_the_next_gather_and_gathers_never_wait():
    with StreamingServer(Script(ttft_s=0.4, interval_s=0.01)) as srv:
        cfg = config(srv.url, enabled=True, every="1h", prompt="PRIVATE-PROMPT-TEXT")
        (source,) = [s for s in build_sources(cfg, SourceEnv()) if isinstance(s, ProbeSource)]

        async def go():
            agent = Agent([source], [], deadline_s=5.0)
            first = await agent.gather_once()  # starts the probe; must not wait for it
            assert probes(first) == []
            assert source.probes == 0  # the probe (0.4 s to first token) was still running
            assert await wait_for(lambda: source.probes == 1)
            second = await agent.gather_once()
            third = await agent.gather_once()
            await agent.close()
            return second, third

        second, third = asyncio.run(go())
        (m,) = probes(second)
        assert probes(third) == []  # reported once
        assert m.tags["target"] == "box-a" and m.tags["model"] == "fake-model" and m.tags["api"] == "openai_chat"
        assert m.tags["server_type"] == "openai" and m.tags["gpu_box"] == "1" and "error" not in m.tags
        assert m.tags["output_tokens_source"] == "usage"
        assert m.fields["success"] == 1 and m.fields["output_tokens"] == 10 and m.fields["ttft_ms"] >= 400
        text = encode_batch([m]).text
        assert "PRIVATE-PROMPT-TEXT" not in text and "tok-SECRET" not in text
        assert srv.posts()[0].body["messages"] == [{"role": "user", "content": "PRIVATE-PROMPT-TEXT"}]


def test_at_most_one_probe_in_flight_per_target():
    with StreamingServer(Script(ttft_s=0.3, interval_s=0.01, answer=("a", "b"))) as srv:
        cfg = config(srv.url, enabled=True, every="100ms")
        metrics = asyncio.run(gather_after_probes(cfg, 3))
        assert srv.max_concurrent_posts == 1
        assert len(probes(metrics)) >= 3
        assert all(m.fields["success"] == 1 for m in probes(metrics))
        # each result keeps its own start time, so several per interval do not overwrite each other
        assert len({m.time_ns for m in probes(metrics)}) == len(probes(metrics))


def test_failures_are_emitted_and_logged_once_without_secrets(caplog):
    with StreamingServer(Script(status=401)) as srv:
        cfg = config(srv.url, enabled=True, every="100ms", prompt="PRIVATE-PROMPT-TEXT")
        with caplog.at_level(logging.INFO, logger="telegraf_llm_input"):
            metrics = asyncio.run(gather_after_probes(cfg, 3))
        (m, *_) = probes(metrics)
        assert m.tags["error"] == "http_4xx" and m.fields["success"] == 0 and m.fields["http_status"] == 401
        warnings = [r.getMessage() for r in caplog.records if "probe box-a" in r.getMessage()]
        assert len(warnings) == 1 and "http_4xx" in warnings[0]
        logged = caplog.text
        assert "tok-SECRET" not in logged and "PRIVATE-PROMPT-TEXT" not in logged


def test_a_hung_server_does_not_block_gathers_and_close_is_prompt():
    with StreamingServer(Script(ttft_s=30.0)) as srv:
        cfg = config(srv.url, enabled=True, timeout="60s")
        (source,) = [s for s in build_sources(cfg, SourceEnv()) if isinstance(s, ProbeSource)]

        async def go():
            agent = Agent([source], [], deadline_s=0.5)
            for _ in range(3):
                metrics = await agent.gather_once()
                assert probes(metrics) == []
            assert await wait_for(lambda: len(srv.posts()) == 1)
            assert agent.stats[source.name].last_ok and agent.stats[source.name].errors == 0
            await agent.close()

        asyncio.run(go())


def test_every_emitted_tag_and_field_is_documented():
    from dataclasses import fields as dc_fields

    from telegraf_llm_input.probe.measure import ProbeResult
    from telegraf_llm_input.probe.runner import ProbeOutcome
    from telegraf_llm_input.schema.probe import PROBE
    from telegraf_llm_input.sources.probe import probe_metric

    values = {f.name: (1 if f.type in ("int | None", "int") else 1.0) for f in dc_fields(ProbeResult)}
    values.update(success=False, error="timeout", detail="x", output_tokens_source="usage", reasoning=True)
    values.update(skipped=None)
    target = config("http://127.0.0.1:1", enabled=True).targets[0]
    m = probe_metric(target, ProbeOutcome(ProbeResult(**values), "m", "ollama", "ollama"), 1)
    skipped = probe_metric(target, ProbeOutcome(ProbeResult(False, skipped="no_model_loaded"), None, "ollama", "x"), 1)
    documented = {f.name for f in PROBE.fields}
    assert set(m.fields) | set(skipped.fields) == documented  # every field emitted when known, nothing undocumented
    assert (set(m.tags) | set(skipped.tags)) - {"gpu_box"} == set(PROBE.tags) - {"host"}


def test_a_probe_on_ollama_with_no_model_loaded_is_skipped_and_says_why(caplog):
    """No model loaded: nothing is sent (a request would load one), a point says so, one info line."""
    with StreamingServer(Script(ollama_version="0.12.6", models=("llama3.2:3b",))) as srv:
        cfg = config(srv.url, enabled=True, every="100ms")
        with caplog.at_level(logging.INFO, logger="telegraf_llm_input"):
            metrics = asyncio.run(gather_after_probes(cfg, 3))
        assert srv.posts() == [] and {r.path for r in srv.requests} == {"/api/ps"}
        m = probes(metrics)[0]
        assert m.fields == {"skipped": 1} and m.tags["skip_reason"] == "no_model_loaded"
        assert m.tags["server_type"] == "ollama" and m.tags["api"] == "ollama" and "model" not in m.tags
        assert "success=" not in encode_batch([m]).text and "skipped=1i" in encode_batch([m]).text
        lines = [r for r in caplog.records if "probe box-a" in r.getMessage()]
        assert [(r.levelname, r.getMessage()) for r in lines] == [("INFO", "probe box-a: not sent: no_model_loaded")]


def test_a_running_probe_gets_the_interpreter_lock_within_a_millisecond():
    """A busy scrape thread hands the GIL over after the switch interval: 5 ms by default, which was the probe's
    p99 error. Once a probe runs, no thread keeps it longer than SWITCH_INTERVAL_S (docs/performance.md)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        with StreamingServer(Script(ttft_s=0.05, interval_s=0.01)) as srv:
            metrics = asyncio.run(gather_after_probes(config(srv.url, enabled=True, every="1h"), 1))
            assert probes(metrics)[0].fields["success"] == 1
            assert sys.getswitchinterval() <= SWITCH_INTERVAL_S == 0.001
    finally:
        sys.setswitchinterval(before)


def test_the_probes_requests_are_in_the_ledger_while_in_flight_and_after():
    """What the server-log source leaves out of user traffic (sources/serverlog.py): the probe's path and times."""
    with StreamingServer(Script(ttft_s=0.4, interval_s=0.01)) as srv:
        env = SourceEnv()
        (source,) = [
            s for s in build_sources(config(srv.url, enabled=True, every="1h"), env) if isinstance(s, ProbeSource)
        ]

        async def go():
            agent = Agent([source], [], deadline_s=5.0)
            before = time.time()
            await agent.gather_once()
            assert await wait_for(lambda: bool(env.probe_ledger.sent("box-a")))
            (in_flight,) = env.probe_ledger.sent("box-a")
            assert in_flight.ended_at is None and in_flight.path == "/v1/chat/completions"
            assert await wait_for(lambda: source.probes == 1)
            (done,) = env.probe_ledger.sent("box-a")
            await agent.close()
            return before, done

        before, done = asyncio.run(go())
        assert before <= done.started_at < done.ended_at <= time.time()
        assert done.ended_at - done.started_at >= 0.4
        assert env.probe_ledger.sent("other") == []
