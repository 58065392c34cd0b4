"""Which model the probe may ask for, and the keep_alive that leaves Ollama's countdown where it was."""

from datetime import datetime, timedelta, timezone

import pytest

from telegraf_llm_input.probe.choose import (
    FOREVER_S,
    Loaded,
    Plan,
    Skip,
    keep_alive,
    lmstudio_loaded,
    ollama_loaded,
    plan,
)

NOW = datetime(2026, 12, 4, 23, 0, 0, tzinfo=timezone.utc)


def test_ollama_ps_with_go_nanosecond_times():
    ps = {
        "models": [
            {"name": "qwen2.5:7b", "model": "qwen2.5:7b", "expires_at": "2026-12-04T23:04:30.123456789Z"},
            {"model": "llama3.2:3b", "expires_at": "2026-12-04T15:01:00-08:00"},
            {"name": ""},
            "junk",
        ]
    }
    assert ollama_loaded(ps, NOW) == [Loaded("qwen2.5:7b", pytest.approx(270.123456)), Loaded("llama3.2:3b", 60.0)]
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


def test_keep_alive_is_the_time_left_less_the_probe():
    assert keep_alive(300.0, 0.5) == 299.5
    assert keep_alive(None, 0.5) is None  # LM Studio: nothing to send
    assert keep_alive(FOREVER_S + 1, 0.5) == -1.0  # kept forever stays forever
    assert keep_alive(1.2, 0.5) == Skip("model_unloading")


def test_plan_prefers_the_loaded_model_of_the_last_run_then_the_first_loaded():
    loaded = [Loaded("a", 100.0), Loaded("b", 200.0)]
    assert plan(loaded, None, None, 1.0) == Plan("a", 99.0)
    assert plan(loaded, None, "b", 1.0) == Plan("b", 199.0)
    assert plan(loaded, None, "gone", 1.0) == Plan("a", 99.0)  # the last run's model was unloaded


def test_plan_skips_without_a_loaded_model_unless_one_is_configured():
    assert plan([], None, "a", 0.0) == Skip("no_model_loaded")
    assert plan([], "mine", None, 0.0) == Plan("mine")  # the user named it: asked for even if that loads it
    assert plan([Loaded("mine", 50.0)], "mine", None, 2.0) == Plan("mine", 48.0)
    assert plan([Loaded("a", 0.5)], None, None, 0.0) == Skip("model_unloading", "a")


def test_remaining_time_from_expires_at_is_read_against_now():
    later = NOW + timedelta(seconds=42)
    (m,) = ollama_loaded({"models": [{"name": "a", "expires_at": later.isoformat()}]}, NOW)
    assert m.remaining_s == 42.0
