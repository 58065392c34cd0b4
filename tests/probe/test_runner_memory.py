"""The probe never changes what Ollama or LM Studio hold in memory (issue 25.4), against the Ollama fake that
models loading and `expires_at`/`keep_alive` as Ollama's scheduler does."""

import asyncio
import time

import httpx
import pytest

from telegraf_llm_input.probe.runner import ProbeRunner
from tests.fakes.streaming import OllamaMemory, Script, StreamingServer, keep_alive_seconds
from tests.probe.test_runner import target

LOADED = "qwen2.5:7b"
OTHER = "llama3.2:3b"


@pytest.fixture
def ollama():
    script = Script(
        ttft_s=0.3, interval_s=0.02, ollama_version="0.12.6", models=(OTHER, LOADED), loaded_models=(LOADED,)
    )
    with StreamingServer(script) as srv:
        yield srv


def runs(url, n, between=None, **probe):
    """n probes by one runner (as the probe source does); `between(i)` runs before probe i."""

    async def go():
        runner = ProbeRunner(target(url, **probe))
        out = []
        try:
            for i in range(n):
                if between:
                    between(i)
                out.append(await runner.run_once())
        finally:
            await runner.aclose()
        return out

    return asyncio.run(go())


def never_loaded_a_model(srv):
    return srv.ollama.loads == [] and all(loaded for _, loaded in srv.ollama.requested)


def test_the_unload_countdown_is_where_it_was(ollama):
    """Any API on Ollama: the native one with keep_alive = the time left less the probe's own duration."""
    memory = ollama.ollama
    with memory.lock:  # loaded three minutes ago with the default keep_alive: two minutes left
        memory.expires[LOADED] = time.time_ns() + 120 * 10**9
    expires = []
    outs = runs(ollama.url, 3, lambda i: expires.append(memory.expires_at(LOADED)))  # default api: openai_chat
    expires.append(memory.expires_at(LOADED))
    assert all(o.result.success and o.model == LOADED and o.api == "ollama" for o in outs)
    assert all(o.server_type == "ollama" for o in outs)
    posts = ollama.posts()
    assert [p.path for p in posts] == ["/api/chat"] * 3  # Ollama's /v1 endpoints take no keep_alive
    assert all(115 < keep_alive_seconds(p.body["keep_alive"], 0) < 120 for p in posts)
    drift_s = [(after - before) / 1e9 for before, after in zip(expires, expires[1:])]
    e2e_s = [o.result.e2e_ms / 1000 for o in outs]
    # The first probe has no duration to subtract yet: it moves the countdown by its own duration.
    assert abs(drift_s[0] - e2e_s[0]) < 0.15
    # Then each subtracts the last one's duration: the countdown moves only by how much longer this probe took
    # than the last (0 when they take the same time). Without keep_alive it would move by 3 minutes.
    for i in (1, 2):
        assert abs(drift_s[i] - (e2e_s[i] - e2e_s[i - 1])) < 0.15, (drift_s, e2e_s)
    assert abs(sum(drift_s[1:])) < 0.5
    assert never_loaded_a_model(ollama)


def test_no_model_loaded_skips_without_asking_for_one(ollama):
    ollama.update(loaded_models=())
    (out,) = runs(ollama.url, 1)
    assert out.result.skipped == "no_model_loaded" and out.model is None and not out.result.success
    assert out.result.fields() == {"skipped": 1}
    assert ollama.posts() == [] and [r.path for r in ollama.requests] == ["/api/ps"]
    assert ollama.ollama.expires_at(OTHER) is None and ollama.ollama.expires_at(LOADED) is None


def test_a_configured_model_is_asked_for_even_when_that_loads_it(ollama):
    ollama.update(loaded_models=())
    (out,) = runs(ollama.url, 1, model=OTHER)
    assert out.result.success and out.model == OTHER
    assert "keep_alive" not in ollama.posts()[0].body and ollama.ollama.loads == [OTHER]


def test_the_model_loaded_now_not_the_first_runs(ollama):
    memory = ollama.ollama

    def swap(i):
        if i == 1:  # the user switched models between two probes
            with memory.lock:
                memory.expires = {OTHER: time.time_ns() + 120 * 10**9}

    outs = runs(ollama.url, 2, swap, api="ollama")
    assert [o.model for o in outs] == [LOADED, OTHER]
    assert [p.body["model"] for p in ollama.posts()] == [LOADED, OTHER]
    assert 100 < keep_alive_seconds(ollama.posts()[1].body["keep_alive"], 0) < 120
    assert never_loaded_a_model(ollama)


def test_a_model_about_to_unload_is_left_to_unload(ollama):
    memory = ollama.ollama
    with memory.lock:
        memory.expires[LOADED] = time.time_ns() + 500_000_000
    (out,) = runs(ollama.url, 1)
    assert out.result.skipped == "model_unloading" and out.model == LOADED and ollama.posts() == []


def test_a_model_kept_forever_stays_forever(ollama):
    memory = ollama.ollama
    memory.release(LOADED, -1)  # OLLAMA_KEEP_ALIVE=-1
    forever = memory.expires_at(LOADED)
    (out,) = runs(ollama.url, 1)
    assert out.result.success and ollama.posts()[0].body["keep_alive"] == -1
    assert memory.expires_at(LOADED) >= forever


def test_lmstudio_probes_only_a_loaded_model(server_lmstudio):
    (out,) = runs(server_lmstudio.url, 1, _target={"type": "lmstudio"}, api="lmstudio")
    assert out.result.success and out.model == "meta-llama-3.1-8b-instruct" and out.server_type == "lmstudio"
    post = server_lmstudio.posts()[0]
    assert post.path == "/api/v0/chat/completions" and post.body["model"] == "meta-llama-3.1-8b-instruct"
    assert "keep_alive" not in post.body
    server_lmstudio.update(
        lmstudio_models={"object": "list", "data": [{"id": "x", "type": "llm", "state": "not-loaded"}]}
    )
    (out,) = runs(server_lmstudio.url, 1)  # type auto: found by its model list
    assert out.result.skipped == "no_model_loaded" and len(server_lmstudio.posts()) == 1


@pytest.fixture
def server_lmstudio():
    import json
    from pathlib import Path

    models = json.loads((Path(__file__).parent.parent / "fixtures" / "lmstudio" / "api-v0-models.json").read_text())
    with StreamingServer(Script(ttft_s=0.05, interval_s=0.01, lmstudio_models=models)) as srv:
        yield srv


def test_the_fake_reads_keep_alive_as_ollama_does():
    assert keep_alive_seconds(None, 300.0) == 300.0
    assert keep_alive_seconds(12.5, 300.0) == 12.0 and keep_alive_seconds(0.9, 300.0) == 0.0  # Go's int(t)
    assert keep_alive_seconds("12.5s", 300.0) == 12.5
    assert keep_alive_seconds("1h30m", 300.0) == 5400.0 and keep_alive_seconds("250ms", 300.0) == 0.25
    assert keep_alive_seconds(-1, 300.0) is None and keep_alive_seconds("-1s", 300.0) is None
    with pytest.raises(ValueError):
        keep_alive_seconds("5 minutes", 300.0)
    memory = OllamaMemory(300.0)
    memory.use("m")
    memory.release("m", 0)
    assert memory.loads == ["m"] and memory.expires_at("m") is None  # keep_alive 0 unloads at once


class Recorded:
    """A ledger as the probe sees one (`runner.Ledger`): what was sent, to which path, from when to when."""

    def __init__(self):
        self.sent = []

    async def track(self, target, path, run):
        start = time.time()
        try:
            return await run
        finally:
            self.sent.append((target, path, start, time.time()))


def test_what_the_probe_sends_is_known_as_its_own(ollama):
    ledger = Recorded()

    async def go():
        runner = ProbeRunner(target(ollama.url, _target={"name": "box"}), ledger=ledger)
        try:
            first = await runner.run_once()
            ollama.ollama.release(LOADED, 0)  # unloaded: the next run sends nothing
            second = await runner.run_once()
        finally:
            await runner.aclose()
        return first, second

    first, second = asyncio.run(go())
    assert first.result.success and second.result.skipped == "no_model_loaded"
    ((name, path, start, end),) = ledger.sent  # the inference request only; its model list is not inference
    assert name == "box" and path == "/api/chat" and end - start >= first.result.e2e_ms / 1000 - 0.01


def test_the_fake_keeps_the_session_duration_of_the_last_request_that_set_one():
    memory = OllamaMemory(300.0)
    memory.use("m")
    memory.release("m", "30s")
    memory.use("m")
    memory.release("m", None)  # a user's request without keep_alive: Ollama keeps 30 s, not its default
    left_s = (memory.expires_at("m") - time.time_ns()) / 1e9
    assert 29 < left_s <= 30


@pytest.mark.xfail(
    strict=True,
    reason="known, open: on Ollama one keep_alive sets both the countdown and the runner's session duration, which "
    "a later request without keep_alive keeps (sched.go useLoadedRunner): the probe's keep_alive = time left leaves "
    "expires_at alone but shortens what the user's next request gets (docs/probe.md)",
)
def test_a_users_request_after_a_probe_gets_the_session_duration_it_had(ollama):
    memory = ollama.ollama
    with memory.lock:  # loaded a while ago with the default keep_alive (5 min): two minutes left
        memory.expires[LOADED] = time.time_ns() + 120 * 10**9
    [out] = runs(ollama.url, 1)
    assert out.result.success
    with httpx.stream("POST", f"{ollama.url}/api/chat", json={"model": LOADED, "messages": []}) as r:
        r.read()  # a user's chat client: no keep_alive
    left_s = (memory.expires_at(LOADED) - time.time_ns()) / 1e9
    assert left_s > 290, left_s  # without the probe: the default 5 minutes from now
