from hypothesis import given, strategies as st

from telegraf_llm_input.apis.framing import LineBuffer, NDJSONParser, SSEEvent, SSEParser
from tests.support.cuts import cut


def feed_all(parser, pieces):
    out = []
    for piece in pieces:
        out.extend(parser.feed(piece))
    return out


def test_data_lines_and_blank_line_end_events():
    p = SSEParser()
    events = p.feed(b'data: {"a":1}\n\ndata: {"b":2}\n\n')
    assert events == [SSEEvent('{"a":1}'), SSEEvent('{"b":2}')]


def test_multi_line_data_is_joined_with_newlines():
    events = SSEParser().feed("data: first\ndata: second\ndata:third\n\n")
    assert [e.data for e in events] == ["first\nsecond\nthird"]


def test_comments_event_names_and_unknown_fields():
    events = SSEParser().feed(": keep-alive\nevent: delta\nid: 7\nretry: 100\ndata: x\n\n: ping\n\n")
    assert events == [SSEEvent("x", "delta")]


def test_done_sentinel():
    (event,) = SSEParser().feed("data: [DONE]\n\n")
    assert event.done
    assert not SSEEvent('{"x": "[DONE]"}').done


def test_crlf_and_cr_line_endings():
    assert [e.data for e in SSEParser().feed("data: a\r\n\r\ndata: b\r\rdata: c\n\n")] == ["a", "b", "c"]


def test_crlf_split_across_reads_is_one_line_end():
    p = SSEParser()
    events = feed_all(p, [b"data: a\r", b"\n\r", b"\n", b"data: b\r", b"\n", b"\r\n"])
    assert [e.data for e in events] == ["a", "b"]


def test_event_is_returned_by_the_read_that_completes_it():
    p = SSEParser()
    assert p.feed(b'data: {"x"') == []
    assert p.feed(b": 1}\n") == []
    assert p.feed(b"\n") == [SSEEvent('{"x": 1}')]


def test_utf8_character_split_across_reads():
    raw = "data: ¿qué?\n\n".encode()
    cut = raw.index("é".encode()) + 1
    events = feed_all(SSEParser(), [raw[:cut], raw[cut:]])
    assert [e.data for e in events] == ["¿qué?"]


def test_unterminated_event_at_end_is_discarded_and_reported():
    p = SSEParser()
    assert p.feed(b"data: a\n\ndata: partial") == [SSEEvent("a")]
    assert p.close() is True
    q = SSEParser()
    q.feed(b"data: a\n\n")
    assert q.close() is False


def test_data_field_without_space_and_empty_data():
    events = SSEParser().feed("data:x\n\ndata\n\n")
    assert [e.data for e in events] == ["x", ""]


@given(
    st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",))), max_size=8),
    st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=20),
    st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_any_split_gives_the_same_events(payloads, cuts, eol):
    raw = "".join(f"data: {p}{eol}{eol}" for p in payloads).encode()
    pieces, pos, i = [], 0, 0
    while pos < len(raw):
        step = cuts[i % len(cuts)]
        pieces.append(raw[pos : pos + step])
        pos += step
        i += 1
    events = feed_all(SSEParser(), pieces)
    assert [e.data for e in events] == payloads


def test_line_buffer_keeps_tail_until_closed():
    lb = LineBuffer()
    assert lb.feed(b"one\ntw") == ["one"]
    assert lb.close() == "tw"


def test_ndjson_lines_skip_blanks_and_flush_last_line():
    p = NDJSONParser()
    assert p.feed(b'{"a":1}\n\n{"b"') == ['{"a":1}']
    assert p.feed(b':2}\r\n{"c":3}') == ['{"b":2}']
    assert p.close() == ['{"c":3}']


_CUTS = st.lists(st.integers(min_value=0, max_value=200), max_size=6)
"""Where reads cut a stream (tests.support.cuts)."""
_EVENT = st.one_of(
    st.text(alphabet='ab é{}":,', max_size=12).map(lambda t: f"data: {t}\n\n"),  # what servers send
    st.text(alphabet="ab é", max_size=8).map(lambda t: f"data:{t}\n\n"),  # no space after the colon
    st.just("data: a\ndata: b\n\n"),  # several data lines
    st.just(": keep-alive\n\n"),
    st.just("event: delta\ndata: x\n\n"),
    st.just("data: y\r\n\r\n"),
    st.just("id: 3\n\n"),
)


@given(st.lists(_EVENT, max_size=8), _CUTS)
def test_feed_data_reads_what_feed_reads_however_the_bytes_are_cut(events, cuts):
    """The fast read of whole `data:` events gives the data `feed` gives, for any stream and any cuts (a UTF-8
    character, a CRLF, an event split across reads included)."""
    pieces = cut("".join(events).encode(), cuts)
    slow, fast = SSEParser(), SSEParser()
    expected = [e.data for e in feed_all(slow, pieces)]
    got = [data for piece in pieces for data in fast.feed_data(piece)]
    assert got == expected


_LINE = st.one_of(
    st.text(alphabet='ab é{}":,', max_size=12).map(lambda t: t + "\n"),  # what Ollama sends
    st.just("\n"),
    st.just("  \n"),
    st.just('{"c":1}\r\n'),
)


@given(st.lists(_LINE, max_size=8), _CUTS)
def test_ndjson_reads_what_the_line_buffer_reads_however_the_bytes_are_cut(lines, cuts):
    """Whole lines read at once give the lines the line buffer gives, for any stream and any cuts (a UTF-8
    character, a CRLF, a line split across reads included)."""
    pieces = cut("".join(lines).encode(), cuts)
    reference, parser = LineBuffer(), NDJSONParser()
    expected = [line for piece in pieces for line in reference.feed(piece) if line.strip()]
    got = [line for piece in pieces for line in parser.feed(piece)]
    assert got == expected
    rest = reference.close()
    assert parser.close() == ([rest] if rest.strip() else [])
