"""InfluxDB line protocol, written the way Telegraf's influx parser reads it.

Rules (from Telegraf's plugins/parsers/influx and the InfluxDB 1.x docs):

* measurement: `,` and space are escaped; tag keys, tag values and field keys also escape `=`.
* string field values are quoted; `\\` and `"` inside are escaped.
* control characters (newline, CR, tab, ...) in any name or value would end or corrupt the
  line, so they are replaced by a space.
* a backslash at the end of a name or tag value would escape the delimiter that follows it,
  so trailing backslashes are removed. A backslash in the middle is kept as it is.
* empty tag values are dropped; tags are written sorted by key.
* ints are int64 (`123i`); an int outside int64 is written as a float. NaN and ±Inf are not
  representable: such fields are dropped. A metric left with no fields is not written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from telegraf_llm_input.metric import FieldValue, Metric

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAME_ESCAPE = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPE = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_STRING_ESCAPE = str.maketrans({"\\": "\\\\", '"': '\\"'})


def normalize_text(text: str) -> str:
    """What a name or tag value becomes on the wire, before escaping.

    Exposed so tests (and users reading the docs) can predict the stored value.
    """
    text = _CONTROL.sub(" ", text)
    return text.rstrip("\\")


def normalize_string_value(text: str) -> str:
    """What a string field value becomes on the wire, before escaping."""
    return _CONTROL.sub(" ", text)


def escape_measurement(name: str) -> str:
    return normalize_text(name).translate(_NAME_ESCAPE)


def escape_key(key: str) -> str:
    """Escape a tag key, tag value or field key."""
    return normalize_text(key).translate(_KEY_ESCAPE)


def format_field_value(value: FieldValue) -> str | None:
    """The wire form of one field value, or None when it cannot be represented."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return f"{value}i"
        try:
            value = float(value)
        except OverflowError:
            return None
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return repr(value)
    if isinstance(value, str):
        return '"' + normalize_string_value(value).translate(_STRING_ESCAPE) + '"'
    return None


def encode_metric(metric: Metric) -> str | None:
    """One line (without newline), or None when the metric has nothing writable."""
    name = escape_measurement(metric.measurement)
    if not name or name.startswith("#"):
        return None
    fields = []
    for key in metric.fields:
        ekey = escape_key(key)
        if not ekey:
            continue
        wire = format_field_value(metric.fields[key])
        if wire is not None:
            fields.append(f"{ekey}={wire}")
    if not fields:
        return None
    parts = [name]
    for key in sorted(metric.tags):
        ekey = escape_key(key)
        evalue = escape_key(str(metric.tags[key]))
        if ekey and evalue:
            parts.append(f"{ekey}={evalue}")
    return f"{','.join(parts)} {','.join(fields)} {int(metric.time_ns)}"


@dataclass(frozen=True, slots=True)
class Encoded:
    """A batch of lines, each ending in a newline, and how many metrics could not be written."""

    text: str
    lines: int
    dropped: int


def encode_batch(metrics: Iterable[Metric]) -> Encoded:
    lines: list[str] = []
    dropped = 0
    for metric in metrics:
        line = encode_metric(metric)
        if line is None:
            dropped += 1
        else:
            lines.append(line)
    text = "\n".join(lines) + "\n" if lines else ""
    return Encoded(text, len(lines), dropped)


def tags_key(tags: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A hashable, order-free identity for a tag set (series keys in sinks and rate state)."""
    return tuple(sorted(tags.items()))
