"""InfluxDB line protocol, written so Telegraf's influx parser and InfluxDB 1.x/2.x read back exactly
the metric we meant (facts from Telegraf's plugins/parsers/influx machine.go.rl and escape.go, and
InfluxDB 1.6's points parser; proved by tests/test_lineprotocol.py against both a second parser and a
real InfluxDB).

Some text has no faithful wire form, so it is normalised first, always the same way
(`normalize_text` for names, tag keys/values and field keys; `normalize_string_value` for string
fields):

* Lone surrogates (a Python str may hold them; UTF-8 cannot) become U+FFFD.
* Control characters (C0, DEL, C1: newline, CR, tab, vertical tab, form feed, NUL, ...) become a
  space: they end or corrupt a line, and Telegraf's parser treats tab/VT/FF as separators.
* In names, tag keys, tag values and field keys, a run of backslashes right before `,`, `=`, space,
  `"` or the end of the text is removed. The parsers disagree on what such a run means (Telegraf
  reads `\\,` in a tag value as an escaped comma, InfluxDB as a backslash and a delimiter; InfluxDB
  unescapes `\\"` and `\\=` in a measurement, Telegraf does not; a trailing backslash escapes the
  delimiter after it). Any other backslash (`C:\\models`, `a\\\\b`) is kept as it is: every parser
  reads it back unchanged.

Then:

* Measurement: `,` and space are escaped. Tag keys, tag values, field keys: `,`, `=` and space.
  A measurement starting with `#` would be read as a comment line: such a metric is not written.
  An empty measurement: not written.
* String field values are quoted; `\\` becomes `\\\\` and `"` becomes `\\"`.
* Tags are written sorted by key. A tag with an empty key or value is dropped; so is a field with an
  empty key. When two keys become equal after normalisation, the later one wins.
* A tag or field named `time` is dropped: InfluxDB rejects the whole point otherwise.
* Booleans `true`/`false`. Ints are int64 (`123i`); an int outside int64 is dropped (written as a
  float it would change the field's type; telegraf_llm_input/fieldtypes.py counts it). Floats are written with `repr` (shortest text
  that parses back to the same double, e.g. `1e+300`, `-0.0`). NaN and ±Inf are not representable:
  such fields are dropped. A metric left with no fields is not written (counted as dropped).
* Timestamps: integer nanoseconds, always present.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple, cast

from telegraf_llm_input.metric import FieldValue, Metric, Rendered

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
RESERVED_KEY = "time"

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BACKSLASHES_BEFORE_SPECIAL = re.compile(r'\\+(?=[,= "]|$)')
_NAME_ESCAPE = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPE = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_STRING_ESCAPE = str.maketrans({"\\": "\\\\", '"': '\\"'})


def normalize_string_value(text: str) -> str:
    """What a string field value becomes on the wire, before escaping."""
    return _CONTROL.sub(" ", _SURROGATE.sub("\ufffd", text))


def normalize_text(text: str) -> str:
    """What a measurement, tag key, tag value or field key becomes on the wire, before escaping.

    Exposed so tests (and users reading the docs) can predict the stored value.
    """
    return _BACKSLASHES_BEFORE_SPECIAL.sub("", normalize_string_value(text))


# Names, tag keys and values repeat every gather: escaping each distinct string once is most of the speed.
@lru_cache(maxsize=16384)
def escape_measurement(name: str) -> str:
    return normalize_text(name).translate(_NAME_ESCAPE)


@lru_cache(maxsize=16384)
def _key_forms(key: str) -> tuple[str, str]:
    """(normalized, escaped) forms of a tag key, tag value or field key."""
    normalized = normalize_text(key)
    return normalized, normalized.translate(_KEY_ESCAPE)


def format_field_value(value: FieldValue) -> str | None:
    """The wire form of one field value, or None when it cannot be represented."""
    if type(value) is float:  # the common case first
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):  # outside int64: no int form, and a float would change the field's type
        return f"{value}i" if INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return repr(value)
    if isinstance(value, str):
        return '"' + normalize_string_value(value).translate(_STRING_ESCAPE) + '"'
    return None


@lru_cache(maxsize=2048)
def _series_prefix(measurement: str, tags: tuple[tuple[str, str], ...]) -> str | None:
    """`measurement,k=v,...` escaped, tags sorted and deduplicated; None when the measurement is not writable.
    A series repeats every gather: this is built once per distinct series (bounded by the cache size)."""
    name = escape_measurement(measurement)
    if not name or name.startswith("#"):
        return None
    written: dict[str, str] = {}
    for key, value in tags:
        nkey, ekey = _key_forms(key)
        nvalue, evalue = _key_forms(str(value))
        if nkey and nvalue and nkey != RESERVED_KEY:
            written[nkey] = f"{ekey}={evalue}"
    return ",".join([name, *(written[k] for k in sorted(written))])


@lru_cache(maxsize=1024)
def _field_prefixes(keys: tuple[str, ...]) -> tuple[str | None, ...] | None:
    """`ekey=` for each field key in order (None: never written), or None when two keys normalise alike
    (then the general loop below applies the last-writable-wins rule)."""
    prefixes: list[str | None] = []
    seen: set[str] = set()
    for key in keys:
        nkey, ekey = _key_forms(key)
        if not nkey or nkey == RESERVED_KEY:
            prefixes.append(None)
            continue
        if nkey in seen:
            return None
        seen.add(nkey)
        prefixes.append(ekey + "=")
    return tuple(prefixes)


@lru_cache(maxsize=1024)
def _fields_template(
    keys: tuple[str, ...], kinds: tuple[type, ...]
) -> tuple[str, Callable[[tuple[FieldValue, ...]], tuple[int, ...]] | None] | None:
    """For a field set of only floats and ints, every key written: one %-format for all of its values
    (`k=%s` for a float: its `repr`, or that text itself, `ms_text`; `k=%di` for an int) and a getter of its ints
    (to check their range); None otherwise."""
    plan = _field_prefixes(keys)
    if plan is None or None in plan:
        return None
    parts = []
    ints = []
    for i, (key_eq, kind) in enumerate(zip(cast("tuple[str, ...]", plan), kinds)):
        if kind is float:
            parts.append(key_eq.replace("%", "%%") + "%s")
        elif kind is int:
            parts.append(key_eq.replace("%", "%%") + "%di")
            ints.append(i)
        else:
            return None
    if not ints:
        return ",".join(parts), None
    if len(ints) == 1:
        only = ints[0]
        return ",".join(parts), lambda values: (values[only],)
    return ",".join(parts), itemgetter(*ints)


def _fields_fast(keys: tuple[str, ...], values: tuple[FieldValue, ...]) -> str | None:
    """All the fields in one formatting call, when every value is a finite float or an int64 (the usual
    gather); None when the general loop is needed (then it gives the same text)."""
    template = _fields_template(keys, tuple(map(type, values)))
    if template is None:
        return None
    text, ints_of = template
    numbers: tuple[float, ...] = values  # type: ignore[assignment]  # a template exists: only floats and ints
    try:
        total = sum(numbers)  # NaN or +-Inf anywhere makes the sum non-finite
    except OverflowError:  # an int too large for a float
        return None
    if total - total != 0.0:
        return None
    if ints_of is not None:
        ints = ints_of(values)
        if max(ints) > INT64_MAX or min(ints) < INT64_MIN:
            return None
    return text % values


def _fields_general(fields: Mapping[str, FieldValue]) -> list[str]:
    written: dict[str, str] = {}  # keyed by normalized name: when two keys normalize alike, the last wins
    for key, value in fields.items():
        nkey, ekey = _key_forms(key)
        if not nkey or nkey == RESERVED_KEY:
            continue
        wire = format_field_value(value)
        if wire is not None:
            written[nkey] = f"{ekey}={wire}"
    return list(written.values())


def encode_metric(metric: Metric) -> str | None:
    """One line (without newline), or None when the metric has nothing writable."""
    tags = metric.tags
    try:
        prefix = _series_prefix(metric.measurement, tuple(tags.items()))
    except TypeError:  # an unhashable tag value: same result, uncached
        prefix = _series_prefix.__wrapped__(metric.measurement, tuple(tags.items()))
    if prefix is None:
        return None
    fields = metric.fields
    keys = tuple(fields)
    values = tuple(fields.values())
    if values:
        fast = _fields_fast(keys, values)
        if fast is not None:
            return f"{prefix} {fast} {int(metric.time_ns)}"
    plan = _field_prefixes(keys)
    if plan is None:
        parts = _fields_general(fields)
    else:
        parts = []
        for key_eq, value in zip(plan, values):
            if key_eq is None:
                continue
            kind = type(value)
            if kind is float:  # the common cases inline; format_field_value for the rest
                if value - value == 0.0:  # type: ignore[operator]  # finite (NaN and +-Inf give NaN); kind is type(value)
                    parts.append(key_eq + repr(value))
            elif kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
                parts.append(f"{key_eq}{value}i")
            else:
                wire = format_field_value(value)
                if wire is not None:
                    parts.append(key_eq + wire)
    if not parts:
        return None
    return f"{prefix} {','.join(parts)} {int(metric.time_ns)}"


class Encoded(NamedTuple):
    """A batch of lines, each ending in a newline, and how many metrics could not be written. (A NamedTuple: made
    every gather, at a third of a frozen dataclass's instructions.)"""

    text: str
    lines: int
    dropped: int


def encode_batch(metrics: Iterable[Metric]) -> Encoded:
    return Encoded(*encode_lines(metrics))


def encode_lines(metrics: Iterable[Metric]) -> tuple[str, int, int]:
    """`encode_batch` as a plain tuple (text, lines, dropped): what sinks call every gather (a NamedTuple is made
    through its Python `__new__`)."""
    lines: list[str] = []
    dropped = 0
    for metric in metrics:
        line = metric.line if type(metric) is Rendered and hasattr(metric, "line") else encode_metric(metric)
        if line is None:
            dropped += 1
        else:
            lines.append(line)
    count = len(lines)
    if count:
        lines.append("")  # the last line's newline, joined with the others'
    return "\n".join(lines), count, dropped


def ms_text(ns: int) -> str:
    """What a line says for the float `ns / 1e6` (nanoseconds as a field in milliseconds): its `repr`, made from the
    integer. Why: an idle interval's one float (`gather_ms`) was the only user of the float-to-text code (dtoa, ~120
    cache lines of code, cold each interval). Exact: below 10**15 ns the quotient, correctly rounded, is the
    double nearest a decimal of at most 15 digits, whose shortest repr is that decimal; at 100 ns and up repr
    writes it without an exponent."""
    if not 100 <= ns < 10**15:
        return repr(ns / 1e6)
    text = "%d.%06d" % (ns // 1_000_000, ns % 1_000_000)  # noqa: UP031 - the code the line templates run, warm
    if ns % 10:  # nine times in ten: no zero to strip
        return text
    text = text.rstrip("0")
    return text + "0" if text.endswith(".") else text


def line_template(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue]) -> str | None:
    """A `%` template of the line `encode_metric` writes for this series and these field keys with values of
    these types: `template % (*values, time_ns)` is that line while every float is finite and every int fits
    int64 (a float may be given as its text: `ms_text`). None when there is none (a string or bool field, a key that is not written or normalises alike)."""
    prefix = _series_prefix(measurement, tuple(tags.items()))
    plan = _fields_template(tuple(fields), tuple(map(type, fields.values())))
    if prefix is None or plan is None:
        return None
    return f"{prefix.replace('%', '%%')} {plan[0]} %d"
