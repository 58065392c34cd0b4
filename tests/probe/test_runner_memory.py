"""The probe never changes what Ollama or LM Studio hold in memory (issue 25.4), against the Ollama fake that
models loading, `expires_at` and the runner's stored session duration as Ollama's scheduler does: on Ollama the
probe sends no `keep_alive` and runs only right after a user's request restarted the countdown."""

import asyncio
import logging
import time

import httpx
import pytest

from telegraf_llm_input.apis.ollama import PROBE_MARK
from telegraf_llm_input.probe.runner import DEFAULT_PROMPT, ProbeRunner
from telegraf_llm_input.probe.watch import SETTLE_S
from telegraf_llm_input.sources.probe import ProbeSource
from tests.fakes.streaming import OllamaMemory, Script, StreamingServer, keep_alive_seconds
from tests.probe.test_runner import target

LOADED = "qwen2.5:7b"
OTHER = "llama3.2:3b"
SLACK_S = 0.5  # scheduling on a busy 2-core machine


def serving(ttft_s, interval_s):
    script = Script(ttft_s, interval_s, ollama_version="0.12.6", models=(OTHER, LOADED), loaded_models=(LOADED,))
    with StreamingServer(script) as srv:
        yield srv


@pytest.fixture
def ollama():
    yield from serving(0.3, 0.02)


@pytest.fixture
def quick():
    """An Ollama that answers in about 0.15 s."""
    yield from serving(0.05, 0.01)


def user(srv, model=LOADED):
    """A user's chat client: no keep_alive (most send none)."""
    httpx.post(f"{srv.url}/api/chat", json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def runs(url, n, between=None, **probe):
    """n runs by one runner; before run i a look at `/api/ps` (as the probe source does every `ps_every`), then
    `between(i)` (a user's request there is what the run sees as the model in use)."""

    async def go():
        runner = ProbeRunner(target(url, **probe))
        out = []
        try:
            for i in range(n):
                if i:  # as the source's runs, `every` apart: past the time its own last request may settle
                    await asyncio.sleep(SETTLE_S)
                await runner.look()
                if between:
                    await asyncio.to_thread(between, i)
                out.append(await runner.run_once())
        finally:
            await runner.aclose()
        return out

    return asyncio.run(go())


def never_loaded_a_model(srv):
    return srv.ollama.loads == [] and all(loaded for _, loaded in srv.ollama.requested)


def by_probe(released):
    return released.body is not None and released.body["messages"][0]["content"] == DEFAULT_PROMPT


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


def probing(srv, seconds, user_every=None, **probe):
    """The probe source's own loop for `seconds`, a user's request every `user_every` s meanwhile: its points and
    what it sent (the ledger)."""
    ledger = Recorded()
    source = ProbeSource(target(srv.url, **probe), ledger=ledger)
    deadline = time.monotonic() + seconds
    source.start()
    try:
        while time.monotonic() < deadline:
            pause = user_every or seconds
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
            if user_every and time.monotonic() < deadline:
                user(srv)
    finally:
        points = asyncio.run(source.gather(None))
        asyncio.run(source.close())
    return points, ledger.sent


def test_an_idle_model_is_never_probed_and_its_countdown_never_moves(ollama, caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    memory = ollama.ollama
    before = memory.expires_at(LOADED)
    points, sent = probing(ollama, 2.6, every="0.5s", ps_every="0.1s")
    assert sent == [] and ollama.posts() == [] and memory.released == []
    assert memory.expires_at(LOADED) == before
    assert 3 <= len(points) <= 7  # one point per `every`, not one per look
    assert all(p.tags["skip_reason"] == "model_idle" and p.fields == {"skipped": 1} for p in points)
    assert all(p.tags["model"] == LOADED for p in points)
    assert sum(r.path == "/api/ps" for r in ollama.requests) >= 15  # it kept looking
    said = [r.getMessage() for r in caplog.records if "not sent" in r.getMessage()]
    assert len(said) == 1 and "would keep it loaded" in said[0]  # once, with why


def test_each_probe_moves_the_countdown_by_at_most_one_look_and_its_own_length(quick):
    """User requests 2.5 s apart, a probe due every second: it waits for the look after a user's request."""
    ps_every = 0.2
    points, sent = probing(quick, 8.0, user_every=2.5, every="1s", ps_every=f"{ps_every}s")
    probes = [p for p in points if "skip_reason" not in p.tags]
    assert len(probes) >= 2 and all(p.fields["success"] == 1 and p.tags["api"] == "ollama" for p in probes)
    assert all("keep_alive" not in p.body for p in quick.posts())
    released = quick.ollama.released
    moves = []
    for i, r in enumerate(released):
        if by_probe(r):
            users = [u for u in released[:i] if not by_probe(u)]
            assert users, "a probe before any user's request"
            (_, _, start, end) = next(s for s in sent if s[2] * 1e9 <= r.at_ns <= s[3] * 1e9 + 1e8)
            moves.append((r.expires_ns - users[-1].expires_ns) / 1e9)
            assert moves[-1] <= ps_every + (end - start) + SLACK_S, moves
    assert len(moves) == len(probes)
    assert quick.ollama.session == {}  # the stored duration is still Ollama's default


def test_with_a_user_chatting_the_probe_runs_at_its_cadence(quick):
    points, sent = probing(quick, 4.6, user_every=0.3, every="1s", ps_every="0.1s")
    probes = [p for p in points if "skip_reason" not in p.tags]
    assert 3 <= len(probes) <= 5 and all(p.fields["success"] == 1 for p in probes)
    assert all(p.tags["skip_reason"] == "model_idle" for p in points if p not in probes)
    starts = [start for (_, _, start, _) in sent]
    assert all(b - a >= 0.95 for a, b in zip(starts, starts[1:])), starts
    user(quick)
    left_s = (quick.ollama.expires_at(LOADED) - time.time_ns()) / 1e9
    assert left_s > 299  # the user's request still gets Ollama's 5 minutes


def test_the_probes_own_request_is_never_a_fresh_countdown(quick):
    async def go():
        runner = ProbeRunner(target(quick.url))
        try:
            await runner.look()
            await asyncio.to_thread(user, quick)
            first = await runner.run_once()  # right after the user's request: probed
            await asyncio.sleep(SETTLE_S + 0.2)
            second = await runner.run_once()  # only the probe's own request moved the countdown since
        finally:
            await runner.aclose()
        return first, second

    first, second = asyncio.run(go())
    assert first.result.success and first.model == LOADED
    assert second.result.skipped == "model_idle" and second.model == LOADED
    assert len(quick.posts()) == 2  # the user's and the first probe


def test_a_model_kept_forever_is_probed_at_any_time(ollama):
    memory = ollama.ollama
    memory.release(LOADED, -1)  # OLLAMA_KEEP_ALIVE=-1
    forever = memory.expires_at(LOADED)
    outs = runs(ollama.url, 2)  # nobody uses it: nothing to move
    assert all(o.result.success and o.model == LOADED for o in outs)
    assert all("keep_alive" not in p.body for p in ollama.posts())
    assert memory.expires_at(LOADED) >= forever and memory.session == {LOADED: None}


def test_no_model_loaded_skips_without_asking_for_one(ollama):
    ollama.update(loaded_models=())
    (out,) = runs(ollama.url, 1)
    assert out.result.skipped == "no_model_loaded" and out.model is None and not out.result.success
    assert out.result.fields() == {"skipped": 1}
    assert ollama.posts() == [] and {r.path for r in ollama.requests} == {"/api/ps"}
    assert ollama.ollama.expires_at(OTHER) is None and ollama.ollama.expires_at(LOADED) is None


def test_a_configured_model_is_asked_for_even_when_that_loads_it(ollama):
    ollama.update(loaded_models=())
    (out,) = runs(ollama.url, 1, model=OTHER)
    assert out.result.success and out.model == OTHER
    assert "keep_alive" not in ollama.posts()[0].body and ollama.ollama.loads == [OTHER]
    (out,) = runs(ollama.url, 1, model=OTHER)  # loaded, nobody uses it: asked for all the same
    assert out.result.success and len(ollama.posts()) == 2 and ollama.ollama.session == {}


def test_the_model_in_use_now_is_probed(ollama):
    memory = ollama.ollama
    memory.use(OTHER)  # a second model loaded, idle: never probed
    memory.release(OTHER, None)

    def chat(i):
        if i == 1:  # the user switched models between two probes
            user(ollama, OTHER)
        else:
            user(ollama, LOADED)

    outs = runs(ollama.url, 2, chat, api="openai_chat")
    assert [o.model for o in outs] == [LOADED, OTHER]
    posts = [p for p in ollama.posts() if p.body["messages"][0]["content"] == DEFAULT_PROMPT]
    assert [(p.path, p.body["model"]) for p in posts] == [("/api/chat", LOADED), ("/api/chat", OTHER)]
    assert all("keep_alive" not in p.body for p in posts) and outs[0].api == "ollama"
    assert memory.loads == [OTHER]  # by the test's own `use`, not by the probe


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


def test_what_the_probe_sends_is_known_as_its_own(ollama):
    ledger = Recorded()

    async def go():
        runner = ProbeRunner(target(ollama.url, _target={"name": "box"}), ledger=ledger)
        try:
            await runner.look()
            await asyncio.to_thread(user, ollama)
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
    # and the request says so itself (gin logs the query): a log reader in another process (top) drops it too
    [probe] = [p for p in ollama.posts() if p.body["messages"][0]["content"] == DEFAULT_PROMPT]
    assert probe.path == "/api/chat" and probe.query == PROBE_MARK


def test_the_fake_keeps_the_session_duration_of_the_last_request_that_set_one():
    memory = OllamaMemory(300.0)
    memory.use("m")
    memory.release("m", "30s")
    memory.use("m")
    memory.release("m", None)  # a user's request without keep_alive: Ollama keeps 30 s, not its default
    left_s = (memory.expires_at("m") - time.time_ns()) / 1e9
    assert 29 < left_s <= 30


def test_a_users_request_after_a_probe_gets_the_session_duration_it_had(ollama):
    memory = ollama.ollama
    [out] = runs(ollama.url, 1, lambda i: user(ollama))  # a user's request, then the probe right after it
    assert out.result.success and "keep_alive" not in ollama.posts()[-1].body
    user(ollama)  # the user's next request, again without keep_alive
    left_s = (memory.expires_at(LOADED) - time.time_ns()) / 1e9
    assert left_s > 299, left_s  # the default 5 minutes from now, as without the probe
    assert memory.session == {}


EMBED = "nomic-embed-text:latest"


def test_an_embedding_model_alone_is_skipped_without_a_request(quick):
    """Ollama answers a chat for an embedding model with 400 (every probe failed); `/api/show` says what it can do
    without loading anything, once per model."""
    quick.script.embedding_models = (EMBED,)
    quick.ollama.expires = {EMBED: quick.ollama.expires.pop(LOADED)}  # only the embedding model is loaded

    chat = {"model": EMBED, "messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(f"{quick.url}/api/chat", json=chat)
    assert r.status_code == 400 and r.json() == {"error": f'"{EMBED}" does not support chat'}  # as Ollama says

    def embed_as_a_user(i):  # an `/api/embed` request's end, as Ollama's scheduler sees it: a fresh countdown
        quick.ollama.use(EMBED)
        quick.ollama.release(EMBED, None)

    outs = runs(quick.url, 3, embed_as_a_user)
    assert [o.result.skipped for o in outs] == ["no_generating_model"] * 3 and outs[0].model == EMBED
    assert not any(o.result.error for o in outs)
    assert [p.body["messages"][0]["content"] for p in quick.posts()] == ["x"]  # the 400 above, nothing from the probe
    assert quick.shows() == [EMBED] and never_loaded_a_model(quick)


def test_beside_an_embedding_model_the_generating_one_is_probed(quick):
    quick.script.embedding_models = (EMBED,)
    quick.ollama.expires[EMBED] = quick.ollama.expires[LOADED] + 10**9  # listed first by /api/ps
    outs = runs(quick.url, 2, lambda i: user(quick))
    assert [o.model for o in outs] == [LOADED, LOADED] and all(o.result.success for o in outs), outs
    probes = [p for p in quick.posts() if p.body["messages"][0]["content"] == DEFAULT_PROMPT]
    assert [p.body["model"] for p in probes] == [LOADED, LOADED]
    assert sorted(quick.shows()) == sorted([EMBED, LOADED]) and never_loaded_a_model(quick)


def test_a_users_request_right_after_start_is_probed_at_the_next_look(quick):
    """The first run had no earlier look to compare with: always a `model_idle` skip, whatever the user did. Now
    the first look comes first, and a request that ends before the next look is seen (and probed after)."""
    source = ProbeSource(target(quick.url, every="1h", ps_every="0.5s"), ledger=Recorded())
    source.start()
    points = []
    try:
        deadline = time.monotonic() + 20
        while not any(r.path == "/api/ps" for r in quick.requests) and time.monotonic() < deadline:
            time.sleep(0.01)  # the first look
        user(quick)
        while not points and time.monotonic() < deadline:
            time.sleep(0.05)
            points = asyncio.run(source.gather(None))
    finally:
        asyncio.run(source.close())
    assert points and "skip_reason" not in points[0].tags and points[0].fields["success"] == 1, points
    assert never_loaded_a_model(quick) and quick.ollama.session == {}
