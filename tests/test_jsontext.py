"""`jsontext.loads` reads and refuses exactly what `json.loads` does."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from telegraf_llm_input.jsontext import loads, loads_bytes

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
_AROUND = st.text(alphabet=" \t\n\r\u00a0\u2028x,]", max_size=3)


def _outcome(read, text):
    try:
        return ("value", read(text))
    except ValueError as exc:
        return ("error", str(exc))


@given(_AROUND, _VALUES, _AROUND)
def test_any_value_with_anything_around_it_reads_or_fails_as_json_loads(before, value, after):
    text = before + json.dumps(value) + after
    assert _outcome(loads, text) == _outcome(json.loads, text)


@given(st.text(alphabet='{}[]":,0123456789.eE+-truefalsn \n\\u', max_size=20))
def test_any_text_reads_or_fails_as_json_loads(text):
    assert _outcome(loads, text) == _outcome(json.loads, text)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-32"])
def test_a_body_in_any_encoding_json_detects_is_read(encoding):
    body = json.dumps({"model": "qwen3:0.6b", "stream": True}).encode(encoding)
    assert loads_bytes(body) == json.loads(body) == {"model": "qwen3:0.6b", "stream": True}


def test_bytes_that_are_not_json_fail_as_json_loads():
    for body in (b"", b"\xff\xfe\xfa", b'{"a": 1', b"null x"):
        assert _outcome(loads_bytes, body)[0] == _outcome(json.loads, body)[0] == "error"
