"""A config file's text to plain data, bounded: size, nesting and alias expansion are checked before anything
is built, so a hostile or broken file costs a fraction of a second and a few MB, and ends in one ConfigError.

YAML lets under 300 bytes of anchors and aliases stand for millions of nodes, and PyYAML's composer recurses once per
nesting level: both are measured on the parser's event stream (flat, no recursion, nothing expanded) first.
Then the document is composed once: repeated keys are looked for in that node graph and the data is built
from it. libyaml's parser is used where PyYAML has it (about 20 times faster than the pure-Python one).
"""

from __future__ import annotations

import functools
import os
import select
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telegraf_llm_input.config.loader import ConfigError, WrittenFloat, WrittenInt
from telegraf_llm_input.lazy import lazy_import

if TYPE_CHECKING:
    import yaml
else:
    yaml = lazy_import("yaml")  # loaded with the first config file: the defaults need no parser

MAX_BYTES = 256 * 1024
"""A config is a few KB (hundreds of targets fit in 100 KB); anything bigger is not one."""
MAX_DEPTH = 32
"""Nesting, aliases expanded: a config is at most about 6 deep."""
MAX_NODES = 100_000
"""Nodes once every alias is expanded (what environment expansion and the checks walk)."""


PIPE_WAIT_S = 5.0
"""How long a FIFO or device may take to give the whole config (`--config <(envsubst < agent.yaml)` is a pipe
that is written at once); a named FIFO that nobody writes to is an error after this, not a hang."""


def read_file(path: str | os.PathLike[str]) -> bytes:
    """At most MAX_BYTES + 1 bytes of the file; opening never blocks (a FIFO with no writer would block `open`).
    OSError when it cannot be opened, ConfigError for a directory or a FIFO that stays silent."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError("", "a directory, not a config file")
        regular = stat.S_ISREG(mode)
        if regular:
            os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size, deadline = 0, time.monotonic() + PIPE_WAIT_S
        while size <= MAX_BYTES:
            if not regular and not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                what = "nothing more" if size else "nothing"
                raise ConfigError("", f"not a regular file and {what} came from it in {PIPE_WAIT_S:g} s (no writer?)")
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(raw: bytes) -> str:
    """The file's text: at most MAX_BYTES of UTF-8 (`raw` may hold one byte more, to tell)."""
    if len(raw) > MAX_BYTES:
        raise ConfigError("", f"larger than {MAX_BYTES // 1024} KiB: not a config file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("", "not UTF-8 text") from None


@functools.cache
def _loader_class() -> type:
    """The safe loader whose numbers keep their text (`WrittenInt`, `WrittenFloat`): YAML 1.1 reads `0123` as 83,
    and a string setting (a header value, a tag) must get what the user wrote."""
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def written(number_type: type, construct: Any) -> Any:
        def build(loader: Any, node: yaml.ScalarNode) -> Any:
            number = number_type(construct(loader, node))
            number.written = node.value
            return number

        return build

    class Loader(base):  # type: ignore[valid-type, misc]
        pass

    Loader.add_constructor("tag:yaml.org,2002:int", written(WrittenInt, base.construct_yaml_int))
    Loader.add_constructor("tag:yaml.org,2002:float", written(WrittenFloat, base.construct_yaml_float))
    return Loader


def load_yaml(text: str) -> Any:
    """Plain data from one YAML document; ConfigError for invalid YAML, a shape over the bounds, or a key
    given twice."""
    loader_class = _loader_class()
    try:
        check_shape(yaml.parse(text, Loader=loader_class))
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _no_duplicate_keys(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("", f"invalid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as exc:  # an integer of 5,000 digits; a bound missed
        raise ConfigError("", f"invalid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


@dataclass
class _Open:
    """A mapping or sequence being read: its anchor, its nodes and its height with aliases expanded."""

    anchor: str | None
    nodes: int = 1
    height: int = 1
    line: int = 0


@dataclass
class _Shape:
    stack: list[_Open] = field(default_factory=list)
    anchors: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Anchor -> (nodes, height) of what it names, expanded."""

    def add(self, nodes: int, height: int, line: int) -> None:
        """A finished node (or an alias) of `nodes` and `height` inside the innermost open one."""
        if len(self.stack) + height > MAX_DEPTH:
            raise ConfigError("", f"nested deeper than {MAX_DEPTH} levels at line {line + 1} (aliases expanded)")
        if self.stack:
            top = self.stack[-1]
            top.nodes += nodes
            top.height = max(top.height, height + 1)
            if top.nodes > MAX_NODES:
                raise ConfigError(
                    "", f"more than {MAX_NODES} values once aliases are expanded (at line {line + 1}): an alias bomb?"
                )


def check_shape(events: Iterable[yaml.Event]) -> None:
    """ConfigError when the document nests deeper than MAX_DEPTH or expands to more than MAX_NODES nodes."""
    shape = _Shape()
    for event in events:
        line = event.start_mark.line if event.start_mark is not None else 0
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(shape.stack) >= MAX_DEPTH:
                raise ConfigError("", f"nested deeper than {MAX_DEPTH} levels at line {line + 1}")
            shape.stack.append(_Open(event.anchor, line=line))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            done = shape.stack.pop()
            if done.anchor is not None:
                shape.anchors[done.anchor] = (done.nodes, done.height)
            shape.add(done.nodes, done.height, done.line)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                shape.anchors[event.anchor] = (1, 1)
            shape.add(1, 1, line)
        elif isinstance(event, yaml.AliasEvent):
            nodes, height = shape.anchors.get(event.anchor or "", (1, 1))  # an unknown one: composing says so
            shape.add(nodes, height, line)


def _no_duplicate_keys(node: yaml.Node, path: str = "") -> None:
    """YAML lets a repeated key silently replace the first; in a config that hides a mistake."""
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            here = f"{path}.{key}" if path else key
            if key in first and key != "<<":
                raise ConfigError(
                    here, f"duplicate key (line {key_node.start_mark.line + 1}; first given at line {first[key] + 1})"
                )
            first[key] = key_node.start_mark.line
            _no_duplicate_keys(value_node, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicate_keys(item, f"{path}[{i}]")
