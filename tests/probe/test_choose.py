"""Which model the probe may ask for."""

from datetime import datetime, timedelta, timezone

import pytest

from telegraf_llm_input.probe.choose import Loaded, Plan, Skip, generates, lmstudio_loaded, ollama_loaded, plan

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


def test_until_from_expires_at_is_read_against_now():
    later = NOW + timedelta(seconds=42)
    (m,) = ollama_loaded({"models": [{"name": "a", "expires_at": later.isoformat()}]}, NOW)
    assert m.until_s == T + 42.0


def test_only_a_model_that_generates_is_chosen():
    loaded = [Loaded("embed"), Loaded("chat")]
    only_chat = lambda m: m.name == "chat"  # noqa: E731
    assert plan(loaded, None, None, generates=only_chat) == Plan("chat")
    assert plan(loaded[:1], None, None, generates=only_chat) == Skip("no_generating_model", "embed")
    assert plan(loaded[:1], "embed", None, generates=only_chat) == Plan("embed")  # the user's own choice
    assert plan(loaded, None, None, lambda m: False, only_chat) == Skip("model_idle", "chat")


def test_ollama_show_capabilities():
    assert generates({"capabilities": ["completion", "tools"]})
    assert not generates({"capabilities": ["embedding"]})
    assert generates({"modelfile": "FROM x"}) and generates(None)  # an Ollama older than `capabilities`: unknown
