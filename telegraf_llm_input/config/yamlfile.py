"""A config file's text to plain data, bounded: size, nesting and alias expansion are checked before anything
is built, so a hostile or broken file costs a fraction of a second and a few MB, and ends in one ConfigError.

YAML lets under 300 bytes of anchors and aliases stand for millions of nodes, and PyYAML's composer recurses once per
nesting level: both are measured on the parser's event stream (flat, no recursion, nothing expanded) first.
Then the document is composed once: repeated keys are looked for in that node graph and the data is built
from it.

The parser: PyYAML's own (pure Python) for a config of up to FAST_BYTES, which the agent drops once the config is
read (`release`: a run reads no other YAML); libyaml's (about 8 times faster) for a larger one. PyYAML's libyaml
binding, once loaded, holds all of PyYAML for the life of the process (~1 MiB of RSS beside the model), so it is
left unloaded (`yaml._yaml` hidden while PyYAML is imported) where the pure parser's time does not matter: a
config of 16 targets reads in ~5 ms, one of FAST_BYTES in ~0.2 s.
"""

from __future__ import annotations

import functools
import importlib
import os
import select
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from telegraf_llm_input.config.loader import ConfigError, WrittenFloat, WrittenInt

if TYPE_CHECKING:
    import yaml

MAX_BYTES = 256 * 1024
"""A config is a few KB (hundreds of targets fit in 100 KB); anything bigger is not one."""
MAX_DEPTH = 32
"""Nesting, aliases expanded: a config is at most about 6 deep."""
MAX_NODES = 100_000
"""Nodes once every alias is expanded (what environment expansion and the checks walk)."""


FAST_BYTES = 32 * 1024
"""A config larger than this (hundreds of targets) is read by libyaml's parser, and PyYAML then stays loaded."""

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


_pure = False
"""Whether PyYAML was imported here without its libyaml binding (then `release` can drop it)."""


def _pyyaml(text: str) -> ModuleType:
    """PyYAML, imported on the first config file (the defaults need no parser): without its libyaml binding for a
    text of up to FAST_BYTES (see the module doc), unless something imported PyYAML already."""
    global _pure
    if "yaml" in sys.modules:
        return sys.modules["yaml"]
    if len(text) > FAST_BYTES or "yaml._yaml" in sys.modules:
        return importlib.import_module("yaml")
    sys.modules["yaml._yaml"] = None  # type: ignore[assignment]  # an import of it fails: PyYAML goes without it
    try:
        module = importlib.import_module("yaml")
    finally:
        del sys.modules["yaml._yaml"]
    _pure = True
    return module


def release() -> None:
    """Drop PyYAML when it was imported here without libyaml: a run reads no other YAML, and what its modules hold
    (~1 MiB) is then free for the run. A later config file imports it again."""
    global _pure
    if not _pure:
        return
    _pure = False
    _loader_class.cache_clear()
    for name in [name for name in sys.modules if name == "yaml" or name.startswith("yaml.")]:
        del sys.modules[name]


@functools.cache
def _loader_class(pyyaml: ModuleType) -> type:
    """The safe loader whose numbers keep their text (`WrittenInt`, `WrittenFloat`): YAML 1.1 reads `0123` as 83,
    and a string setting (a header value, a tag) must get what the user wrote."""
    base = getattr(pyyaml, "CSafeLoader", pyyaml.SafeLoader)

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
    pyyaml = _pyyaml(text)
    loader_class = _loader_class(pyyaml)
    try:
        check_shape(pyyaml.parse(text, Loader=loader_class), pyyaml)
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _no_duplicate_keys(node, pyyaml)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except pyyaml.YAMLError as exc:
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


def check_shape(events: Iterable[yaml.Event], pyyaml: ModuleType) -> None:
    """ConfigError when the document nests deeper than MAX_DEPTH or expands to more than MAX_NODES nodes."""
    shape = _Shape()
    for event in events:
        line = event.start_mark.line if event.start_mark is not None else 0
        if isinstance(event, (pyyaml.MappingStartEvent, pyyaml.SequenceStartEvent)):
            if len(shape.stack) >= MAX_DEPTH:
                raise ConfigError("", f"nested deeper than {MAX_DEPTH} levels at line {line + 1}")
            shape.stack.append(_Open(event.anchor, line=line))
        elif isinstance(event, (pyyaml.MappingEndEvent, pyyaml.SequenceEndEvent)):
            done = shape.stack.pop()
            if done.anchor is not None:
                shape.anchors[done.anchor] = (done.nodes, done.height)
            shape.add(done.nodes, done.height, done.line)
        elif isinstance(event, pyyaml.ScalarEvent):
            if event.anchor is not None:
                shape.anchors[event.anchor] = (1, 1)
            shape.add(1, 1, line)
        elif isinstance(event, pyyaml.AliasEvent):
            nodes, height = shape.anchors.get(event.anchor or "", (1, 1))  # an unknown one: composing says so
            shape.add(nodes, height, line)


def _no_duplicate_keys(node: yaml.Node, pyyaml: ModuleType, path: str = "") -> None:
    """YAML lets a repeated key silently replace the first; in a config that hides a mistake."""
    if isinstance(node, pyyaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, pyyaml.ScalarNode) else "?"
            here = f"{path}.{key}" if path else key
            if key in first and key != "<<":
                raise ConfigError(
                    here, f"duplicate key (line {key_node.start_mark.line + 1}; first given at line {first[key] + 1})"
                )
            first[key] = key_node.start_mark.line
            _no_duplicate_keys(value_node, pyyaml, here)
    elif isinstance(node, pyyaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicate_keys(item, pyyaml, f"{path}[{i}]")
