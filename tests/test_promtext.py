"""promtext.parse against prometheus_client's parsers, on fixtures and generated pages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.openmetrics.exposition import generate_latest as om_generate
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_reference
from prometheus_client.parser import text_string_to_metric_families as reference

from telegraf_llm_input import promtext
from telegraf_llm_input.promtext import Page, Sample, family_name, label_key, parse, series_key

FIXTURES = Path(__file__).parent / "fixtures" / "prometheus"


def _same_value(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def reference_samples(text: str) -> list[tuple]:
    """prometheus_client's samples as (name, labels, value, timestamp_ms)."""
    out = []
    for family in reference(text):
        for s in family.samples:
            ts = None if s.timestamp is None else round(s.timestamp * 1000)
            out.append((s.name, dict(s.labels), float(s.value), ts))
    return out


def our_samples(page: Page) -> list[tuple]:
    """Our samples, with prometheus_client's one renaming applied: it appends `_total` to the
    samples of a counter family whose name lacks it (we keep the wire name)."""
    out = []
    for s in page.samples:
        name = s.name
        if page.types.get(name) == "counter" and not name.endswith("_total"):
            name += "_total"
        out.append((name, s.labels, s.value, s.timestamp_ms))
    return out


def assert_same(ours: list[tuple], theirs: list[tuple]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a[0] == b[0] and a[1] == b[1] and a[3] == b[3], (a, b)
        assert _same_value(a[2], b[2]), (a, b)


# --- fixtures -------------------------------------------------------------------------------

FIXTURE_FILES = sorted(FIXTURES.glob("*.txt"))


def test_fixtures_exist():
    names = {p.name for p in FIXTURE_FILES}
    assert {"vllm.txt", "llamacpp.txt", "sglang.txt", "tgi.txt"} <= names


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixture_matches_prometheus_client(path: Path):
    text = path.read_text()
    page = parse(text)
    assert page.errors == 0
    assert len(page.samples) > 0
    assert_same(our_samples(page), reference_samples(text))


def test_vllm_fixture_content():
    page = parse((FIXTURES / "vllm.txt").read_text())
    assert page.types["vllm:time_to_first_token_seconds"] == "histogram"
    assert page.types["vllm:prompt_tokens_total"] == "counter"
    les = [s.labels["le"] for s in page.samples if s.name == "vllm:time_to_first_token_seconds_bucket"]
    assert les[:3] == ["0.001", "0.005", "0.01"] and les[-2:] == ["2560.0", "+Inf"]
    running = [s for s in page.samples if s.name == "vllm:num_requests_running"]
    assert running[0].labels == {"engine": "0", "model_name": "Qwen/Qwen2.5-7B-Instruct"}
    assert page.type_of("vllm:time_to_first_token_seconds_bucket") == "histogram"
    assert page.type_of("vllm:prompt_tokens_created") == "gauge"


def test_tgi_counter_keeps_wire_name():
    page = parse((FIXTURES / "tgi.txt").read_text())
    names = {s.name for s in page.samples}
    assert "tgi_request_success" in names and "tgi_request_success_total" not in names
    assert page.type_of("tgi_request_success") == "counter"
    assert page.helps == {}


def test_llamacpp_exponent_value():
    page = parse((FIXTURES / "llamacpp.txt").read_text())
    values = {s.name: s.value for s in page.samples}
    assert values["llamacpp:prompt_tokens_total"] == 1234570.0
    assert values["llamacpp:requests_processing"] == 2.0


# --- specific syntax ------------------------------------------------------------------------


def one(text: str) -> Sample:
    page = parse(text)
    assert page.errors == 0, text
    assert len(page.samples) == 1, page.samples
    return page.samples[0]


def test_escapes_in_label_values():
    s = one('m{a="x\\\\y",b="q\\"uote",c="line\\nbreak",d="keep\\t"} 1\n')
    assert s.labels == {"a": "x\\y", "b": 'q"uote', "c": "line\nbreak", "d": "keep\\t"}


def test_special_values():
    page = parse("a NaN\nb +Inf\nc -Inf\nd 1e3\ne -0.5\nf Inf\n")
    values = [s.value for s in page.samples]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf, 1000.0, -0.5, math.inf]


def test_timestamps_text_format_are_milliseconds():
    assert one("m 1 1700000000123\n").timestamp_ms == 1700000000123
    assert one('m{a="b"} 1 -5\n').timestamp_ms == -5
    assert one("m 1\n").timestamp_ms is None


def test_openmetrics_timestamps_are_seconds_and_exemplars_ignored():
    text = (
        "# TYPE h histogram\n"
        'h_bucket{le="1"} 2 # {trace_id="abc"} 0.5 1700000000.5\n'
        'h_bucket{le="+Inf"} 3 1700000000.25 # {trace_id="d e}f"} 7\n'
        "h_count 3\nh_sum 2.5\n# EOF\n"
    )
    page = parse(text)
    assert page.errors == 0
    assert [(s.name, s.value, s.timestamp_ms) for s in page.samples] == [
        ("h_bucket", 2.0, None),
        ("h_bucket", 3.0, 1700000000250),
        ("h_count", 3.0, None),
        ("h_sum", 2.5, None),
    ]


def test_eof_stops_parsing():
    page = parse("a 1\n# EOF\nb 2\n")
    assert [s.name for s in page.samples] == ["a"]


def test_duplicate_help_and_type_tolerated():
    page = parse("# HELP a first\n# HELP a second\n# TYPE a gauge\n# TYPE a counter\na 1\n")
    assert page.errors == 0
    assert page.helps == {"a": "first"} and page.types == {"a": "gauge"}
    assert len(page.samples) == 1


def test_help_escapes():
    page = parse('# HELP a back\\\\slash new\\nline \\"q\\"\n')
    assert page.helps["a"] == 'back\\slash new\nline \\"q\\"'  # 0.0.4 does not escape quotes
    page = parse('# HELP a say \\"hi\\"\n# EOF\n')
    assert page.helps["a"] == 'say "hi"'  # OpenMetrics does


def test_byte_order_mark_ignored():
    page = parse("\ufeff# TYPE a gauge\na 1\n")
    assert page.errors == 0 and page.types == {"a": "gauge"} and len(page.samples) == 1


def test_awkward_label_values_and_spacing():
    s = one('vllm:x_y{ a = "}", b="a,b=c d", c="日本語 ü" , } 4\n')
    assert s.name == "vllm:x_y"
    assert s.labels == {"a": "}", "b": "a,b=c d", "c": "日本語 ü"}
    assert one('m{a="1",} 2').labels == {"a": "1"}
    assert one("m{} 2").labels == {}
    assert one("\t m \t 3 \t 4 \r").timestamp_ms == 4


def test_label_value_with_hash_and_quote_braces():
    s = one('m{a="x # y",b="{\\"k\\": 1}"} 5\n')
    assert s.labels == {"a": "x # y", "b": '{"k": 1}'}
    s = one('m{a="x # y"} 3 # {t="1"} 1\n')
    assert s.labels == {"a": "x # y"} and s.value == 3.0


def test_exemplar_after_unlabelled_sample():
    s = one('c_total 7 # {trace_id="a}b"} 1.0\n')
    assert (s.name, s.labels, s.value, s.timestamp_ms) == ("c_total", {}, 7.0, None)


def test_quoted_utf8_names():
    s = one('{"my.metric", "label.with.dots"="v"} 1\n')
    assert s.name == "my.metric" and s.labels == {"label.with.dots": "v"}


def test_garbage_lines_counted_and_skipped():
    text = "\n".join(
        [
            "ok 1",
            "garbage here",
            "no_value",
            'bad{a="1"',
            "bad{a=1} 2",
            'dup{a="1",a="2"} 3',
            "bad_value abc",
            "under 1_000",
            "too many 1 2 3",
            "9starts_with_digit 1",
            "foo-bar 1",
            'missing_comma{a="1" b="2"} 1',
            "# TYPE x notatype",
            "# TYPE",
            "",
            "ok2 2",
        ]
    )
    page = parse(text)
    assert [s.name for s in page.samples] == ["ok", "ok2"]
    assert page.errors == 13


def test_plain_comments_are_not_errors():
    page = parse("# just a comment\n#no space\n# HELPER text\na 1\n")
    assert page.errors == 0 and len(page.samples) == 1


def test_openmetrics_created_and_total_are_plain_samples():
    text = "# TYPE c counter\nc_total 5\nc_created 1700000000.0\n# EOF\n"
    page = parse(text)
    assert [(s.name, s.value) for s in page.samples] == [("c_total", 5.0), ("c_created", 1.7e9)]
    assert page.type_of("c_total") == "counter" and page.type_of("c_created") == "counter"
    assert family_name("c_total", page.types) == "c"


def test_non_string_input_is_an_error_not_an_exception():
    page = parse(b"a 1\n")  # type: ignore[arg-type]
    assert page.errors == 1 and page.samples == []


# --- generated pages against prometheus_client -------------------------------------------------

_first = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:"
_rest = _first + "0123456789"
metric_stems = st.text(alphabet=_rest, min_size=1, max_size=10)
label_names = st.text(alphabet=_rest.replace(":", ""), min_size=1, max_size=8).filter(
    lambda n: not n[0].isdigit() and not n.startswith("__") and n not in ("le", "quantile")
)
label_values = st.text(
    alphabet=st.one_of(
        st.sampled_from('"\\\n}{,= #\t'),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    ),
    max_size=12,
)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
values = st.one_of(finite, st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(-(10**6), 10**6))
timestamps = st.one_of(st.none(), st.integers(min_value=0, max_value=4_000_000_000_000))


def escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fmt_value(v, style: int) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v) if style % 2 == 0 else f"{v:.6e}"


@st.composite
def label_sets(draw):
    names = draw(st.lists(label_names, max_size=3, unique=True))
    return {n: draw(label_values) for n in names}


@st.composite
def sample_line(draw, name: str, labels: dict[str, str], value=None):
    """One sample line with random but valid spacing and formatting."""
    items = [f'{k}="{escape(v)}"' for k, v in labels.items()]
    sep = draw(st.sampled_from([",", ", "]))
    body = sep.join(items)
    if items and draw(st.booleans()):
        body += ","
    label_part = "{" + body + "}" if (items or draw(st.booleans())) else ""
    if value is None:
        value = draw(values)
    line = f"{name}{label_part}{draw(st.sampled_from([' ', '  ', chr(9)]))}{fmt_value(value, draw(st.integers(0, 1)))}"
    ts = draw(timestamps)
    if ts is not None:
        line += f" {ts}"
    return line


@st.composite
def families(draw, index: int):
    kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary", "untyped", "none"]))
    base = f"f{index}_" + draw(metric_stems)
    if kind == "counter" and draw(st.booleans()):
        base += "_total"
    lines = []
    if draw(st.booleans()):
        lines.append(f"# HELP {base} " + escape(draw(st.text(alphabet="abc xyz\\", max_size=15))))
    if kind != "none":
        lines.append(f"# TYPE {base} {kind}")
    for _ in range(draw(st.integers(1, 3))):
        labels = draw(label_sets())
        if kind == "histogram":
            bounds = sorted(set(draw(st.lists(finite, min_size=1, max_size=4))))
            total = 0
            for b in bounds:
                total += draw(st.integers(0, 5))
                lines.append(draw(sample_line(f"{base}_bucket", {**labels, "le": repr(b)}, total)))
            lines.append(draw(sample_line(f"{base}_bucket", {**labels, "le": "+Inf"})))
            lines.append(draw(sample_line(f"{base}_count", labels)))
            lines.append(draw(sample_line(f"{base}_sum", labels)))
        elif kind == "summary":
            for q in ("0.5", "0.99"):
                lines.append(draw(sample_line(base, {**labels, "quantile": q})))
            lines.append(draw(sample_line(f"{base}_count", labels)))
            lines.append(draw(sample_line(f"{base}_sum", labels)))
        else:
            lines.append(draw(sample_line(base, labels)))
        if draw(st.booleans()):
            lines.append("")
    return lines


@st.composite
def pages(draw):
    lines: list[str] = []
    for i in range(draw(st.integers(1, 5))):
        lines.extend(draw(families(i)))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines) + newline


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages())
def test_generated_pages_match_prometheus_client(text: str):
    page = parse(text)
    assert page.errors == 0, text
    assert_same(our_samples(page), reference_samples(text))


def raw(page: Page) -> list[tuple]:
    return [(s.name, s.labels, s.value, s.timestamp_ms) for s in page.samples]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages(), pages(), st.data())
def test_heads_kept_between_pages_and_only_change_no_sample(first: str, second: str, data):
    """A target's heads cache (reused across its scrapes) and a table's `only` give exactly the samples a plain
    parse gives (those of the kept names), with the label keys a consumer would compute."""
    names = sorted({s.name for s in parse(first).samples})
    only = frozenset(data.draw(st.lists(st.sampled_from(names), unique=True)) if names else [])
    heads: dict = {}
    heads_only: dict = {}
    for text in (first, second, first, second):
        plain = parse(text)
        cached = parse(text, heads=heads)
        kept = parse(text, only=only, heads=heads_only)
        assert_same(raw(cached), raw(plain))
        assert_same(raw(kept), [x for x in raw(plain) if x[0] in only])
        assert kept.skipped == {s.name for s in plain.samples} - only
        for sample in cached.samples + kept.samples:
            assert label_key(sample) == tuple(sorted(sample.labels.items()))
            assert series_key(sample) == tuple(sorted(kv for kv in sample.labels.items() if kv[0] != "le"))


def test_heads_stop_at_their_cap_and_the_rest_parses_as_usual(monkeypatch):
    monkeypatch.setattr(promtext, "MAX_HEADS", 3)
    text = "".join(f'm{{i="{i}"}} {i}\n' for i in range(10))
    heads: dict = {}
    for _ in range(2):
        assert_same(raw(parse(text, heads=heads)), raw(parse(text)))
    assert len(heads) == 3


def test_a_cached_head_with_an_exemplar_or_new_value_is_read_again():
    heads: dict = {}
    parse('a{x="1"} 1\n', heads=heads)
    assert list(heads) == ['a{x="1"}']
    page = parse('a{x="1"} 2\na{x="1"} 3 # {trace_id="t"} 1\na{x="1"} 1_000\n', openmetrics=True, heads=heads)
    assert [s.value for s in page.samples] == [2.0, 3.0] and page.errors == 1


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str):
    page = parse(text)
    assert page.errors >= 0
    for s in page.samples:
        assert isinstance(s.value, float) and isinstance(s.labels, dict)


_fragments = st.sampled_from(
    [
        "m",
        "{",
        "}",
        '"',
        "\\",
        "=",
        ",",
        " ",
        "\n",
        "#",
        "# TYPE ",
        "# HELP ",
        "# EOF",
        "NaN",
        "1",
        "1e9",
        "le",
        'a="b"',
        "\t",
        "_total",
        ":",
        "+Inf",
        "-",
        ".",
        "é",
        "\x00",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_fragments, max_size=40).map("".join))
def test_near_valid_text_never_raises(text: str):
    page = parse(text)
    sample_lines = 0  # every non-comment line before `# EOF` is either a sample or an error
    for raw in text.split("\n"):
        line = raw.strip()
        if line.startswith("#"):
            if line[1:2] in (" ", "\t") and line[1:].split() == ["EOF"]:
                break
        elif line:
            sample_lines += 1
    assert len(page.samples) + page.errors >= sample_lines
    for s in page.samples:
        assert s.name and isinstance(s.value, float)


# --- OpenMetrics: prometheus_client's own exposition against its OpenMetrics parser ---------


def test_openmetrics_page_matches_openmetrics_parser():
    registry = CollectorRegistry()
    c = Counter("prompt_tokens", "Prompt tokens.", ["model_name", "engine"], registry=registry)
    g = Gauge("num_requests_running", "Running.", ["model_name", "engine"], registry=registry)
    h = Histogram(
        "time_to_first_token_seconds",
        "TTFT.",
        ["model_name", "engine"],
        buckets=[0.001, 0.1, 1.0, 10.0],
        registry=registry,
    )
    s = Summary("queue_seconds", "Queue.", ["model_name"], registry=registry)
    for model in ('a"b', "c\\d", "e\nf"):
        c.labels(model, "0").inc(42)
        g.labels(model, "0").set(3)
        h.labels(model, "0").observe(0.05, exemplar={"trace_id": "xyz"})
        h.labels(model, "0").observe(5)
        s.labels(model).observe(0.2)
    text = om_generate(registry).decode()
    assert text.rstrip().endswith("# EOF")
    page = parse(text)
    assert page.errors == 0
    theirs = []
    for family in om_reference(text):
        for smp in family.samples:
            ts = None if smp.timestamp is None else round(float(smp.timestamp) * 1000)
            theirs.append((smp.name, dict(smp.labels), float(smp.value), ts))
    ours = [(x.name, x.labels, x.value, x.timestamp_ms) for x in page.samples]
    assert_same(ours, theirs)
    assert any(x.name.endswith("_created") for x in page.samples)
    assert page.types["prompt_tokens"] == "counter"
    assert page.type_of("prompt_tokens_total") == "counter"
