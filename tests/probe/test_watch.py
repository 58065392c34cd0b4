"""When Ollama's model is in use: a fresh countdown, never the probe's own; kept forever."""

from datetime import datetime, timezone

from telegraf_llm_input.probe.watch import FOREVER_S, SETTLE_S, Watch, forever

T = datetime(2026, 12, 4, 23, 0, 0, tzinfo=timezone.utc).timestamp()


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
