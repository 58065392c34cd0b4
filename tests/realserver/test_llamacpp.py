"""The agent against a real llama-server (tiny random model): the numbers we emit are the server's own.

Fakes prove we read llama.cpp's wire format as documented; these prove we read it as it is. The model generates
gibberish, so nothing here looks at text: only token counts, rates, slots and process facts, each compared with
what the server itself reports (its /metrics page read with prometheus_client, its `usage` objects, psutil).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from line_protocol_parser import parse_line

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.processors import build_processors
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv

pytestmark = pytest.mark.realserver

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [f"Request number {i}: tell me about the weather in city {i}." for i in range(16)]


def make_agent(targets: list[dict], deadline_s: float = 5.0) -> Agent:
    """An agent with only the given targets (no host or GPU sources), writing nowhere: gather_once returns."""
    config = parse_config({"targets": targets, "host": {"enabled": False}, "gpu": {"enabled": False}})
    env = SourceEnv()
    return Agent(build_sources(config, env), [], deadline_s=deadline_s, processors=build_processors(config))


def target(server, **extra) -> dict:
    base = {"url": server.url, "name": "tiny", "timeout": "2s", "process": {"enabled": False}}
    base.update(extra)
    return base


def find(metrics: list[Metric], measurement: str) -> list[Metric]:
    return [m for m in metrics if m.measurement == measurement]


def server_metric(metrics: list[Metric]) -> Metric:
    found = [m for m in find(metrics, "llm_server") if "up" in m.fields]  # the page's; its log's point has no `up`
    assert len(found) == 1, f"expected one llm_server metric, got {found}"
    return found[0]


def around(server, work: Callable[[], Awaitable[None]]) -> tuple[Metric, dict, Metric, dict]:
    """Gather and read the server's own counters, run `work()`, then both again: (first, before, second, after)."""

    async def scenario():
        agent = make_agent([target(server, type="llamacpp")])
        try:
            first = server_metric(await agent.gather_once())
            before = server.metrics()
            await work()
            second = server_metric(await agent.gather_once())
            return first, before, second, server.metrics()
        finally:
            await agent.close()

    return asyncio.run(scenario())


def warnings(agent_log) -> list[str]:
    return agent_log.lines(logging.WARNING)


def test_auto_detects_llamacpp_through_the_cli(llama_server, tmp_path):
    """`type: auto` from the command line: one gather's line protocol names the server llama.cpp."""
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "targets": [{"url": llama_server.url, "type": "auto"}],
                "host": {"enabled": False},
                "gpu": {"enabled": False},
            }
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "telegraf_llm_input", "--config", str(config), "--once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = [parse_line(line) for line in run.stdout.splitlines() if line.strip()]
    servers = [p for p in lines if p["measurement"] == "llm_server"]
    assert len(servers) == 1, run.stdout
    point = servers[0]
    assert point["tags"]["server_type"] == "llamacpp"
    assert "tiny-llama" in point["tags"].get("model", ""), point["tags"]
    assert point["fields"]["up"] == 1
    assert point["fields"]["slots_total"] == 2
    assert "E! " not in run.stderr and "W! " not in run.stderr, run.stderr


def test_counters_equal_the_servers_own(llama_server):
    """Counters are the server's /metrics counters, and their change is the sum of the requests' `usage`."""

    async def scenario():
        agent = make_agent([target(llama_server, type="llamacpp")])
        try:
            first = server_metric(await agent.gather_once())
            before = llama_server.metrics()
            usages = []
            for prompt in PROMPTS[:3]:
                reply = await asyncio.to_thread(llama_server.complete, prompt, 24)
                usages.append(reply["usage"])
            second = server_metric(await agent.gather_once())
            after = llama_server.metrics()
            return first, before, second, after, usages
        finally:
            await agent.close()

    first, before, second, after, usages = asyncio.run(scenario())
    for agent_side, server_side in ((first, before), (second, after)):
        fields = agent_side.fields
        assert fields["up"] == 1
        assert fields["prompt_tokens_total"] == server_side["prompt_tokens_total"]
        assert fields["generation_tokens_total"] == server_side["tokens_predicted_total"]
        assert fields["requests_running"] == server_side["requests_processing"] == 0
        assert fields["requests_waiting"] == server_side["requests_deferred"] == 0
        assert fields["slots_total"] == 2
        assert fields["slots_busy"] == 0
    generated = sum(u["completion_tokens"] for u in usages)
    prompted = sum(u["prompt_tokens"] for u in usages)
    assert generated == 3 * 24
    assert second.fields["generation_tokens_total"] - first.fields["generation_tokens_total"] == generated
    # llama.cpp counts prompt tokens reused from its cache apart from the ones it processed.
    cached = after["prompt_tokens_cached_total"] - before["prompt_tokens_cached_total"]
    assert second.fields["prompt_tokens_total"] - first.fields["prompt_tokens_total"] + cached == prompted
    assert isinstance(second.fields["generation_tokens_total"], int)


def test_generation_rate_is_the_counter_delta_over_the_interval(llama_server):
    """After N requests between two gathers, tokens/s = Δtokens_predicted_total / Δt of the two gathers."""

    async def work():
        started = time.monotonic()
        for prompt in PROMPTS[3:7]:
            await asyncio.to_thread(llama_server.complete, prompt, 48)
        await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - started)))  # an interval long enough to rate

    first, before, second, after = around(llama_server, work)
    assert "generation_tokens_per_s" not in first.fields  # first scrape: counters only, no rates
    delta_tokens = after["tokens_predicted_total"] - before["tokens_predicted_total"]
    delta_prompt = after["prompt_tokens_total"] - before["prompt_tokens_total"]
    assert delta_tokens == 4 * 48
    dt = (second.time_ns - first.time_ns) / 1e9
    assert dt >= 2.0
    # The agent may time the interval by its scrapes rather than the gather stamps: a few % on a busy machine.
    assert second.fields["generation_tokens_per_s"] == pytest.approx(delta_tokens / dt, rel=0.05)
    assert second.fields["prompt_tokens_per_s"] == pytest.approx(delta_prompt / dt, rel=0.05)


def test_two_slots_four_requests_two_running_two_waiting(make_llama_server):
    """4 requests on 2 slots: the agent sees 2 running, 2 waiting and 2 slots busy while they run.

    llama-server answers /metrics between decode steps, so a scrape may be slow (then `busy`); sample repeatedly
    while the requests run and look at the most seen. The first two are long (a server of its own that shifts
    its context, so a request may outgrow the model's 2048 tokens): the two waiting stay waiting for seconds, not
    for the fraction of one that a fast machine took for 960 tokens (CI once saw only 1 waiting: the first request
    had ended before the fourth arrived).
    """
    server = make_llama_server(extra=["--context-shift"])
    lengths = [8000, 8000, 200, 200]

    async def scenario():
        agent = make_agent([target(server, type="llamacpp")], deadline_s=3.0)
        seen: list[dict] = []
        try:
            await agent.gather_once()
            async with httpx.AsyncClient() as client:
                # Sent from this event loop, not from threads this busy machine may start late, and 50 ms apart:
                # llama-server's HTTP thread pool (cpp-httplib) can leave a request that arrives in the same
                # instant as another in its job queue until a worker frees, invisible to the slot scheduler.
                requests = []
                for i, n_predict in enumerate(lengths):
                    requests.append(
                        asyncio.ensure_future(server.acomplete(client, PROMPTS[8 + i], n_predict, ignore_eos=True))
                    )
                    await asyncio.sleep(0.05)
                deadline = time.monotonic() + 240
                while not all(r.done() for r in requests) and time.monotonic() < deadline:
                    seen.append(dict(server_metric(await agent.gather_once()).fields))
                    await asyncio.sleep(0.05)
                replies = await asyncio.gather(*requests)
            after = server_metric(await agent.gather_once()).fields
            return seen, replies, after
        finally:
            await agent.close()

    seen, replies, after = asyncio.run(scenario())
    assert [r["usage"]["completion_tokens"] for r in replies] == lengths
    answered = [s for s in seen if s.get("up") == 1 and "requests_running" in s]
    assert answered, f"no scrape answered while the requests ran: {seen}"
    assert max(s["requests_running"] for s in answered) == 2
    timeline = [(s.get("requests_running"), s.get("requests_waiting"), s.get("slots_busy")) for s in seen]
    assert max(s["requests_waiting"] for s in answered) == 2, timeline
    assert max(s.get("slots_busy", 0) for s in answered) == 2
    assert all(s["requests_running"] <= 2 and s.get("slots_busy", 0) <= 2 for s in answered)
    assert after["requests_running"] == 0 and after["requests_waiting"] == 0 and after["slots_busy"] == 0


def test_probe_measures_ttft_tpot_and_counts_tokens_like_the_server(llama_server):
    """The probe streams a real chat completion: its output_tokens is what the server counted for it."""
    max_tokens = 32

    async def scenario():
        probe = {"enabled": True, "every": "1h", "max_tokens": max_tokens, "timeout": "60s"}
        agent = make_agent([target(llama_server, type="llamacpp", probe=probe)])
        try:
            before = llama_server.metrics()
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                probes = find(await agent.gather_once(), "llm_probe")
                if probes:
                    return before, probes, llama_server.metrics()
                await asyncio.sleep(0.2)
            raise AssertionError("no llm_probe within 90 s")
        finally:
            await agent.close()

    before, probes, after = asyncio.run(scenario())
    assert len(probes) == 1
    probe = probes[0]
    fields = probe.fields
    assert fields["success"] == 1, probe
    assert probe.tags["server_type"] == "llamacpp"
    assert probe.tags.get("error", "") in ("", "none")
    server_generated = after["tokens_predicted_total"] - before["tokens_predicted_total"]
    assert fields["output_tokens"] == server_generated == max_tokens
    prompt_processed = after["prompt_tokens_total"] - before["prompt_tokens_total"]
    prompt_cached = after["prompt_tokens_cached_total"] - before["prompt_tokens_cached_total"]
    assert fields["prompt_tokens"] == prompt_processed + prompt_cached
    assert 0 < fields["ttft_ms"] < fields["e2e_ms"]
    assert fields["tpot_ms"] > 0
    # TPOT spreads the time after the first token over the other tokens: consistent with e2e - ttft.
    assert fields["tpot_ms"] * (max_tokens - 1) <= (fields["e2e_ms"] - fields["ttft_ms"]) * 1.05 + 1.0
    assert fields["tokens_per_s"] > 0


def test_process_found_by_port_with_rss_and_restart(make_llama_server):
    """llm_process finds llama-server by its port, reports its RSS, and counts a restart."""
    server = make_llama_server()

    async def gather_process(agent):
        found = find(await agent.gather_once(), "llm_process")
        assert len(found) == 1, found
        return found[0]

    async def scenario():
        agent = make_agent([target(server, type="llamacpp", process={"enabled": True})])
        try:
            first = await gather_process(agent)
            rss_now = psutil.Process(server.pid).memory_info().rss
            old_pid = server.pid
            await asyncio.to_thread(server.restart)
            second = await gather_process(agent)
            return first, rss_now, old_pid, second
        finally:
            await agent.close()

    first, rss_now, old_pid, second = asyncio.run(scenario())
    assert first.fields["pid"] == old_pid
    assert first.fields["rss_bytes"] == pytest.approx(rss_now, rel=0.25)
    assert first.fields["rss_bytes"] > 10 * 1024 * 1024  # the model alone is ~35 MB
    assert first.fields["restarts_total"] == 0
    assert first.fields["exposed"] == 0
    assert first.tags["server_type"] == "llamacpp"
    assert second.fields["pid"] == server.pid != old_pid
    assert second.fields["restarts_total"] == 1


def test_killed_server_gives_up_0_and_one_warning_then_recovers(make_llama_server, agent_log):
    server = make_llama_server()

    async def scenario():
        agent = make_agent([target(server, type="llamacpp", retries=0)])
        try:
            up = server_metric(await agent.gather_once())
            await asyncio.to_thread(server.complete, PROMPTS[12], 8)
            await asyncio.to_thread(server.kill)
            mark = len(agent_log.records)
            down = [server_metric(await agent.gather_once()) for _ in range(3)]
            down_warnings = [r.getMessage() for r in agent_log.records[mark:] if r.levelno >= logging.WARNING]
            await asyncio.to_thread(server.start)
            mark = len(agent_log.records)
            back = [server_metric(await agent.gather_once()) for _ in range(2)]
            back_warnings = [r.getMessage() for r in agent_log.records[mark:] if r.levelno >= logging.WARNING]
            return up, down, down_warnings, back, back_warnings
        finally:
            await agent.close()

    up, down, down_warnings, back, back_warnings = asyncio.run(scenario())
    assert up.fields["up"] == 1
    for metric in down:
        assert metric.fields["up"] == 0
        assert "generation_tokens_total" not in metric.fields  # no made-up zeros
        assert metric.tags["target"] == "tiny"
    assert len(down_warnings) == 1, down_warnings
    assert "\n" not in down_warnings[0]
    assert back[0].fields["up"] == 1 and back[1].fields["up"] == 1
    assert back_warnings == []
    # The restarted server's counters start again from zero: no negative rate, no spike.
    assert back[1].fields["generation_tokens_total"] == 0
    assert back[1].fields.get("generation_tokens_per_s", 0) >= 0


API_KEY = "sk-test-4f1d0c9e-not-a-real-key"


def test_api_key_with_bearer_token(make_llama_server, agent_log):
    server = make_llama_server(api_key=API_KEY)

    async def scenario():
        agent = make_agent([target(server, type="auto", bearer_token=API_KEY)])
        try:
            return [server_metric(await agent.gather_once()) for _ in range(2)]
        finally:
            await agent.close()

    first, second = asyncio.run(scenario())
    assert first.tags["server_type"] == "llamacpp"
    assert second.fields["up"] == 1
    assert second.fields["slots_total"] == 2
    assert second.fields["generation_tokens_total"] == server.metrics()["tokens_predicted_total"]
    assert warnings(agent_log) == []
    assert not any(API_KEY in line for line in agent_log.lines())


def test_api_key_without_token_one_clear_error_and_no_made_up_numbers(make_llama_server, agent_log):
    """Without the token only /health answers: a point still comes out every gather (up=0, as for every fault in
    issue 3), no counters, and one warning that says what to fix: the token, never more than once."""
    server = make_llama_server(api_key=API_KEY)

    async def scenario():
        agent = make_agent([target(server, type="llamacpp")])
        try:
            return [server_metric(await agent.gather_once()) for _ in range(3)]
        finally:
            await agent.close()

    metrics = asyncio.run(scenario())
    for metric in metrics:
        assert metric.fields["up"] == 0
        assert metric.fields.get("loading", 0) == 0  # a 401 is not "Loading model": not "loading"
        assert "generation_tokens_total" not in metric.fields and "slots_total" not in metric.fields
    lines = warnings(agent_log)
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]
    assert "401" in lines[0] and "bearer_token" in lines[0], lines[0]


def test_prefix_cache_spec_decode_and_batching_fields_are_the_servers_own(llama_server):
    """The same prompt twice: the second reuses the first's cached prefix. The agent's prefix-cache fields are the
    server's own `prompt_tokens_cached_total` (hits) and processed + cached tokens (queries, as vLLM counts them);
    the speculative-decoding counters (0 without a draft model) and the busy-slots average are its own too."""
    prompt = " ".join(PROMPTS[:4])

    async def work():
        for _ in range(2):
            await asyncio.to_thread(llama_server.complete, prompt, 8)

    first, before, second, after = around(llama_server, work)
    f = second.fields
    cached = after["prompt_tokens_cached_total"] - before["prompt_tokens_cached_total"]
    processed = after["prompt_tokens_total"] - before["prompt_tokens_total"]
    assert cached > 0  # the second request reused the first one's prefix
    assert f["prefix_cache_hits_total"] == after["prompt_tokens_cached_total"]
    assert f["prefix_cache_queries_total"] == after["prompt_tokens_total"] + after["prompt_tokens_cached_total"]
    assert f["prefix_cache_hit_ratio"] == pytest.approx(cached / (cached + processed))
    assert f["spec_decode_drafts_total"] == after["spec_decode_num_drafts_total"] == 0
    assert f["spec_decode_draft_tokens_total"] == 0 and "spec_decode_acceptance_ratio" not in f
    assert f["busy_slots_per_decode"] == pytest.approx(after["n_busy_slots_per_decode"])


def test_context_used_ratio_follows_a_long_generation(make_llama_server):
    """No `n_past` on this build: the busy slot's context is `n_prompt_tokens` (prompt + tokens decoded so far).

    One slot of the model's whole 2048 tokens and a generation nearly that long: a fast machine decodes it in a
    fraction of a second, and the scrapes must catch the slot busy more than once.
    """
    llama_server = make_llama_server(slots=1, ctx=2048)
    n_predict = 2000

    async def scenario():
        agent = make_agent([target(llama_server, type="llamacpp")], deadline_s=3.0)
        seen: list[dict] = []
        try:
            await agent.gather_once()  # the first gather's one-off work (/props, connections) before the request
            async with httpx.AsyncClient() as client:
                request = asyncio.ensure_future(llama_server.acomplete(client, PROMPTS[12], n_predict, ignore_eos=True))
                deadline = time.monotonic() + 120
                while not request.done() and time.monotonic() < deadline:
                    seen.append(dict(server_metric(await agent.gather_once()).fields))
                    await asyncio.sleep(0.05)
                reply = await request
            return seen, reply
        finally:
            await agent.close()

    seen, reply = asyncio.run(scenario())
    prompt_tokens = reply["usage"]["prompt_tokens"]
    used = [s["context_used_ratio"] * 2048 for s in seen if s.get("slots_busy") == 1 and "context_used_ratio" in s]
    assert used, f"no scrape saw the slot busy: {seen}"
    assert all(prompt_tokens <= u <= prompt_tokens + n_predict for u in used), (prompt_tokens, used)
    assert max(used) > prompt_tokens + 1  # it grows with the decoded tokens
