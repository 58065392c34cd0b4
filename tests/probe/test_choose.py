"""Which model the probe may ask for (probe/choose.py), and when Ollama's is in use (probe/watch.py)."""

from datetime import datetime, timedelta, timezone

import pytest

from telegraf_llm_input.probe.choose import Loaded, Plan, Skip, lmstudio_loaded, ollama_loaded, plan
from telegraf_llm_input.probe.watch import FOREVER_S, SETTLE_S, Watch, forever

NOW = datetime(2026, 12, 4, 23, 0, 0, tzinfo=timezone.utc)
T = NOW.timestamp()


def test_ollama_ps_with_go_nanosecond_times():
    ps = {
        "models": [
            {"name": "qwen2.5:7b", "model": "qwen2.5:7b", "expires_at": "2026-12-04T23:04:30.123456789Z"},
            {"model": "llama3.2:3b", "expires_at": "2026-12-04T15:01:00-08:00"},
            {"name": "no-time"},
            {"name": ""},
            "junk",
        ]
    }
    assert ollama_loaded(ps, NOW) == [
        Loaded("qwen2.5:7b", pytest.approx(T + 270.123456)),
        Loaded("llama3.2:3b", T + 60.0),
        Loaded("no-time", None),
    ]
    assert ollama_loaded({"models": []}, NOW) == []
    assert ollama_loaded({"error": "x"}, NOW) is None and ollama_loaded([], NOW) is None


def test_lmstudio_loaded_chat_models_only():
    doc = {
        "data": [
            {"id": "a", "type": "llm", "state": "loaded"},
            {"id": "b", "type": "vlm", "state": "not-loaded"},
            {"id": "e", "type": "embeddings", "state": "loaded"},
            {"id": "v", "type": "vlm", "state": "loaded"},
        ]
    }
    assert lmstudio_loaded(doc) == [Loaded("a"), Loaded("v")]
    assert lmstudio_loaded({"object": "list"}) is None


def test_plan_prefers_the_loaded_model_of_the_last_run_then_the_first_loaded():
    loaded = [Loaded("a"), Loaded("b")]
    assert plan(loaded, None, None) == Plan("a")
    assert plan(loaded, None, "b") == Plan("b")
    assert plan(loaded, None, "gone") == Plan("a")  # the last run's model was unloaded


def test_plan_skips_without_a_loaded_model_unless_one_is_configured():
    assert plan([], None, "a") == Skip("no_model_loaded")
    assert plan([], "mine", None) == Plan("mine")  # the user named it: asked for even if that loads it
    assert plan([Loaded("mine")], "mine", None, lambda m: False) == Plan("mine")  # even while idle


def test_plan_on_ollama_takes_only_a_model_in_use():
    loaded = [Loaded("a"), Loaded("b")]
    assert plan(loaded, None, "a", lambda m: m.name == "b") == Plan("b")
    assert plan(loaded, None, "b", lambda m: True) == Plan("b")
    assert plan(loaded, None, "b", lambda m: False) == Skip("model_idle", "b")
    assert plan(loaded, None, None, lambda m: False) == Skip("model_idle", "a")


def test_a_countdown_that_moved_forward_is_fresh_once():
    watch = Watch()
    assert watch.see({"a": T + 100}, T) == frozenset()  # the first look has nothing to compare with
    assert watch.see({"a": T + 100}, T + 5) == frozenset()  # counting down: idle
    assert watch.see({"a": T + 310}, T + 10) == {"a"}  # a user's request ended since the last look
    assert watch.see({"a": T + 310}, T + 15) == frozenset()
    assert watch.see({"a": T + 309}, T + 20) == frozenset()  # moved back (a shorter keep_alive): not a request end


def test_a_model_loaded_since_the_last_look_is_in_use():
    watch = Watch()
    watch.see({}, T)
    assert watch.see({"a": T + 300}, T + 5) == {"a"}
    assert watch.see({"a": T + 300, "b": None}, T + 10) == {"b"}


def test_the_probes_own_request_is_never_a_fresh_countdown():
    watch = Watch()
    watch.see({"a": T + 100}, T)
    assert watch.see({"a": T + 200}, T + 5) == {"a"}
    watch.probed(T + 6)  # the probe ran and ended: Ollama sets a + stored duration
    assert watch.fresh == frozenset()
    assert watch.see({"a": T + 306}, T + 6.2) == frozenset()  # its own move
    assert watch.see({"a": T + 306.5}, T + 6.5) == frozenset()  # still settling: the look before came too soon
    assert watch.see({"a": T + 306.5}, T + 6 + SETTLE_S + 1) == frozenset()
    assert watch.see({"a": T + 320}, T + 6 + SETTLE_S + 6) == {"a"}  # then a user's request again


def test_kept_forever():
    assert forever(T + FOREVER_S + 1, T) and not forever(T + 300, T) and not forever(None, T)


def test_until_from_expires_at_is_read_against_now():
    later = NOW + timedelta(seconds=42)
    (m,) = ollama_loaded({"models": [{"name": "a", "expires_at": later.isoformat()}]}, NOW)
    assert m.until_s == T + 42.0
