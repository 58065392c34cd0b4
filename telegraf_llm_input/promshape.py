"""The shape of a Prometheus page: where its values are, so a later page of the same shape is read by position.

Why: a model server's page keeps its series, their order and every byte around their values from one scrape to
the next; only the values change. Once `promtext.parse` has read a page, its `Shape` reads the next one with a
few C-level passes (split into lines, compare the fixed lines, check each line's head, cut and `float` the
values): no `Sample`, no label dict, no per-line Python code. The parser stays the one that decides what a page
means: a shape is compiled only from a page it read without a fault, and it accepts a later page only when every
line would read the same way (same line count; comment and blank lines equal; every sample line starting with
the same head; every value a plain float with no `_` and no timestamp). Anything else gives None: the caller
reads that page with the parser again and compiles a new shape from it.

A line of a name `only` leaves out is checked only up to its name and the character after it (`name{` or
`name `): the parser skips such a line whatever follows. `# EOF` (where the parser stops) is not planned at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from io import BytesIO
from operator import itemgetter
from typing import TypeVar
from weakref import WeakValueDictionary

from telegraf_llm_input.promtext import METRIC_NAME, Page, Sample

__all__ = ["Shape", "compile_shape"]


Lines = list[bytes]


def _lines(page: str | bytes | bytearray) -> Lines | None:
    """The page's lines as UTF-8 bytes, each with its `\\n` (the last one without, when the page does not end
    with one): `BytesIO.readlines` finds line ends with memchr, where `str.split` steps through every character.
    A page as it came (bytes) is read as it is, with no text made of it. None: not UTF-8 (a byte the decoder
    refuses, a lone surrogate)."""
    try:
        if isinstance(page, str):
            if page[:1] == "\ufeff":
                page = page[1:]
            return BytesIO(page.encode()).readlines()
        if not page.isascii():
            page.decode()  # what Response.text() would refuse is not read here either
            if page[:3] == b"\xef\xbb\xbf":  # a byte-order mark is not part of the first name
                page = page[3:]
        return BytesIO(page).readlines()
    except UnicodeError:
        return None


def _picker(positions: Sequence[int]) -> Callable[[Lines], Sequence[bytes]]:
    """The lines at `positions`, always as a sequence (itemgetter gives a bare item for one)."""
    if len(positions) > 1:
        return itemgetter(*positions)
    return itemgetter(slice(positions[0], positions[0] + 1)) if positions else lambda _: ()


class _Layout:
    """What pages of one layout have alike whatever their series' labels: line count, the positions and text of the
    fixed lines (joined: one object, not one a line), the positions of the headed lines and the heads of the
    skipped ones (names only). Servers of one kind serving different models (each its own page) hold one."""

    __slots__ = ("lines", "fixed", "fixed_at", "headed_at", "skipped", "key", "__weakref__")

    def __init__(self, lines: int, fixed: dict[int, bytes], headed_at: tuple[int, ...], skipped: tuple[bytes, ...]):
        self.lines = lines
        self.fixed = b"".join(fixed.values())
        """The fixed lines joined: equal joins are equal lines, as every line but a page's last ends at its one
        `\\n` (readlines)."""
        self.fixed_at = _picker(tuple(fixed))
        self.headed_at = _picker(headed_at)
        self.skipped = skipped
        self.key = (lines, tuple(fixed), self.fixed, headed_at, skipped)


class Shape:
    """A page's layout (see the module doc): its line count, its fixed lines, the heads of its sample lines."""

    __slots__ = ("lines", "samples", "key", "_layout", "_heads", "_head_bytes", "__weakref__")

    def __init__(self, lines: int, fixed: dict[int, bytes], read: dict[int, bytes], skipped: dict[int, bytes]):
        self.lines = lines
        self.samples = len(read)
        """Values a page of this shape gives (its sample lines, duplicates included)."""
        headed_at = (*read, *skipped)
        """The sample lines, then the skipped lines."""
        self._layout = _shared(_LAYOUTS, _Layout(lines, fixed, headed_at, tuple(skipped.values())))
        self._heads = (*read.values(), *self._layout.skipped)
        self._head_bytes = sum(map(len, self._heads))
        self.key = (self._layout, self.samples, self._heads)
        """All a shape checks: two shapes of equal keys read every page alike."""

    def values(self, page: str | bytes | bytearray) -> list[float] | None:
        """The page's sample values in page order, or None when it is not of this shape."""
        lines = _lines(page)
        layout = self._layout
        if lines is None or len(lines) != self.lines or b"".join(layout.fixed_at(lines)) != layout.fixed:
            return None
        headed = layout.headed_at(lines)
        rests = list(map(bytes.removeprefix, headed, self._heads))
        # a line without its head is left whole: the lengths tell (every head is at least a name long)
        if sum(map(len, headed)) - sum(map(len, rests)) != self._head_bytes:
            return None
        del rests[self.samples :]
        if b"_" in b"".join(rests):
            return None
        try:
            return list(map(float, rests))
        except ValueError:  # a timestamp, an exemplar, junk: the parser says what that line is
            return None


def compile_shape(text: str, page: Page, samples: Sequence[Sample], only: frozenset[str]) -> Shape | None:
    """The shape of `text`, which `promtext.parse(text, only=only)` read into `page`; `samples`: the page's samples
    as parsed (before de-duplication). None when a line is not one a shape can check (see the module doc)."""
    if page.errors:
        return None
    lines = _lines(text)
    if lines is None:
        return None
    fixed: dict[int, bytes] = {}
    read: dict[int, bytes] = {}
    skipped: dict[int, bytes] = {}
    n = 0
    for i, encoded in enumerate(lines):
        raw = encoded.decode()
        line = raw.strip()
        if not line or line[0] == "#":
            if line.startswith("# EOF"):
                return None
            fixed[i] = encoded
            continue
        brace = line.find("{")
        name = line[:brace] if brace >= 0 else line.split(None, 1)[0]
        if METRIC_NAME.fullmatch(name) is None:
            return None
        lead = len(raw) - len(raw.lstrip())
        if name not in only:
            head = raw[: lead + len(name) + 1]
            if len(head) <= lead + len(name):  # a bare name: its head would also start longer names
                return None
            skipped[i] = head.encode()
            continue
        if "#" in line or n >= len(samples):
            return None
        close = line.rfind("}") if brace >= 0 else len(name) - 1
        tokens = line[close + 1 :].split()
        sample = samples[n]
        if close < brace or len(tokens) != 1 or sample.name != name or sample.timestamp_ms is not None:
            return None
        value = tokens[0]
        try:
            number = float(value)
        except ValueError:
            return None
        if "_" in value or not (number == sample.value or (number != number and sample.value != sample.value)):
            return None
        read[i] = raw[: lead + len(line) - len(value)].encode()
        n += 1
    if n != len(samples):
        return None
    return _shared(_SHAPES, Shape(len(lines), fixed, read, skipped))


_SHAPES: WeakValueDictionary[tuple[object, ...], Shape] = WeakValueDictionary()
"""The shapes targets hold, by key: targets serving the same page (replicas of one server) hold one."""
_LAYOUTS: WeakValueDictionary[tuple[object, ...], _Layout] = WeakValueDictionary()
"""The layouts shapes hold, by key: servers of one kind and version serving different models hold one."""

_Kept = TypeVar("_Kept", Shape, _Layout)


def _shared(table: WeakValueDictionary[tuple[object, ...], _Kept], kept: _Kept) -> _Kept:
    """The one in use of `table` that checks what `kept` does, else `kept` (then in use)."""
    return table.setdefault(kept.key, kept)
