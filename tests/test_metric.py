"""`Rendered`: a point made from its line's parts says the same through its fields as its line, and is immutable."""

from __future__ import annotations

import dataclasses

import pytest

from telegraf_llm_input.lineprotocol import encode_batch, line_template, ms_text
from telegraf_llm_input.metric import Metric, Rendered, rendered_fields


def made(gather_ns: int = 14_792, gathers: int = 7) -> Rendered:
    keys, values = ("gather_ms", "gathers"), (ms_text(gather_ns), gathers, 1_700_000_000_000_000_000)
    template = line_template("llm_agent", {"host": "h"}, rendered_fields(keys, values))
    assert template is not None
    return Rendered.of("llm_agent", {"host": "h"}, keys, values, template % values)


def test_its_fields_are_what_its_line_says_a_floats_text_read_back_as_the_float():
    point = made()
    assert point.fields == {"gather_ms": 0.014792, "gathers": 7} and type(point.fields["gather_ms"]) is float
    assert (point.measurement, point.tags, point.time_ns) == ("llm_agent", {"host": "h"}, 1_700_000_000_000_000_000)
    plain = Metric(point.measurement, dict(point.tags), dict(point.fields), point.time_ns)
    assert point.line + "\n" == encode_batch([plain]).text
    assert point == Rendered.of("llm_agent", {"host": "h"}, ("gather_ms", "gathers"), (0.014792, 7, point.time_ns), "x")


def test_it_cannot_be_changed():
    point = made()
    for name in ("line", "fields", "measurement", "_parts"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(point, name, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.line


def test_a_copy_has_no_line_and_is_encoded_from_its_fields():
    copy = dataclasses.replace(made(), tags={"host": "other"})
    assert type(copy) is Rendered and not hasattr(copy, "line")
    assert copy.fields == {"gather_ms": 0.014792, "gathers": 7}
    assert encode_batch([copy]).text.startswith("llm_agent,host=other gather_ms=0.014792,gathers=7i ")
