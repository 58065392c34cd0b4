"""The config reference, read from the config dataclasses: keys, types, defaults and attribute docstrings.

Defaults are written once, in the dataclasses; the tables in docs/configuration.md and the keys in
sample-config.yaml come from here. Conventions read from a field's attribute docstring (the string
literal right under it):

- the docstring is the key's meaning, in the reference table and as the sample config's comment;
- a last sentence `Default: <text>.` describes a default the value cannot show (None meaning "the
  machine's hostname", a factory); it goes to the default column;
- a field with `metadata={"key": ...}` is spelt that way in YAML (`from:`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from telegraf_llm_input.config.loader import BYTES, DURATION, SECRET

_DEFAULT = re.compile(r"\s*Default: (.+?)\.?\s*$", re.S)


@dataclass(frozen=True)
class Key:
    """One config key, as the reference shows it."""

    key: str
    """Path below its section, e.g. `probe.every` or `json_fields.<name>.kind`."""
    type: str
    default: str
    """As written in YAML (`10s`, `8MiB`, `[auto]`), `required`, or the docstring's `Default:` text."""
    meaning: str
    value: Any
    """The default value itself (dataclasses.MISSING when required)."""
    hint: Any
    secret: bool = False
    described: bool = False
    """The default column is the docstring's `Default:` text, not the value."""


@functools.cache
def _docstrings(cls: type) -> dict[str, str]:
    """Attribute docstrings of a class and its bases: the string literal right after `name: type = ...`."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def _strip(tp: Any) -> tuple[Any, tuple]:
    """(base type, Annotated markers), with Optional removed."""
    if get_origin(tp) in (Union, types.UnionType):
        real = [a for a in get_args(tp) if a is not type(None)]
        if len(real) == 1:
            return _strip(real[0])
    if get_origin(tp) is Annotated:
        base, *extras = get_args(tp)
        return base, tuple(extras)
    return tp, ()


def type_name(tp: Any) -> str:
    """A short name for a config type: `duration`, `size`, `bool`, `int`, `list of int`, `a`, `b`, ..."""
    base, extras = _strip(tp)
    if DURATION in extras:
        return "duration"
    if BYTES in extras:
        return "size"
    if SECRET in extras:
        return "secret"
    if dataclasses.is_dataclass(base):
        return "section"
    origin = get_origin(base)
    if origin in (Union, types.UnionType) and all(dataclasses.is_dataclass(a) for a in get_args(base)):
        return "entry"
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(base))
    if origin in (Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in get_args(base) if a is not type(None))
    if origin is list:
        item = type_name(get_args(base)[0])
        return "list of entries" if item in ("section", "entry") else f"list of {item}"
    if origin is dict:
        value = get_args(base)[1]
        return "map" if value in (str, Any) else f"map of {type_name(value)}"
    if base is Any:
        return "any"
    return {bool: "bool", int: "int", float: "number", str: "string"}.get(base, getattr(base, "__name__", str(base)))


def format_duration(seconds: float) -> str:
    """`10s`, `500ms`, `60s`, `5m`, `1h30m`: how the sample config and the tables write a duration."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds <= 120:
        return f"{seconds:g}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n:g}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)


def format_bytes(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def yaml_value(value: Any, tp: Any) -> str:
    """A default as it is written in YAML."""
    _, extras = _strip(tp)
    if value is None:
        return "null"
    if DURATION in extras:
        return format_duration(value)
    if BYTES in extras:
        return format_bytes(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if value.is_integer() else repr(value)
    if isinstance(value, str) and (value == "" or value[0] in "-?:,[]{}#&*!|>'\"%@`"):
        return f'"{value}"'  # YAML would read an indicator (`org: -`) as syntax, not text
    if isinstance(value, list):
        return "[" + ", ".join(yaml_value(v, Any) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v, Any)}" for k, v in value.items()) + "}"
    return str(value)


def _default_value(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def keys(cls: type, prefix: str = "", skip: tuple[str, ...] = ()) -> list[Key]:
    """Every key of section `cls`, nested sections flattened (`process.pattern`) unless named in `skip`."""
    hints = get_type_hints(cls, include_extras=True)
    docs = _docstrings(cls)
    out: list[Key] = []
    own = cls.__dict__.get("__annotations__", {})
    # A section's own keys first, then those it shares with others (the batching keys of both InfluxDB outputs).
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):
        if not f.init:
            continue
        name = f.metadata.get("key", f.name)
        if name in skip:
            continue
        tp = hints[f.name]
        base, extras = _strip(tp)
        if dataclasses.is_dataclass(base):
            out += keys(base, f"{prefix}{name}.")  # type: ignore[arg-type]
            continue
        if get_origin(base) is dict and dataclasses.is_dataclass(get_args(base)[1]):
            out += keys(get_args(base)[1], f"{prefix}{name}.<name>.")
            continue
        meaning = docs.get(f.name, "")
        value = _default_value(f)
        match = _DEFAULT.search(meaning)
        if match:
            meaning, default = meaning[: match.start()].rstrip(), match.group(1)
        elif value is dataclasses.MISSING:
            default = "required"
        elif value is None:
            default = "none"
        else:
            default = f"`{yaml_value(value, tp)}`"
        out.append(Key(prefix + name, type_name(tp), default, meaning, value, tp, SECRET in extras, match is not None))
    return out


def markdown_table(cls: type, prefix: str = "", skip: tuple[str, ...] = ()) -> str:
    """The reference table of one section: key, type, default, meaning."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in keys(cls, "", skip):
        name = f"`{prefix}{k.key}`" + (f" / `{prefix}{k.key}_file`" if k.secret else "")
        meaning = re.sub(r"(?<!\\)\|", "\\|", k.meaning)
        rows.append(f"| {name} | {k.type} | {k.default} | {meaning} |")
    return "\n".join(rows) + "\n"


def _comment(text: str, indent: str, width: int = 100) -> list[str]:
    return textwrap.wrap(
        text,
        width - len(indent) - 2,
        initial_indent=f"{indent}# ",
        subsequent_indent=f"{indent}# ",
        break_on_hyphens=False,
    )


def yaml_block(
    cls: type, indent: str = "  ", examples: dict[str, str] | None = None, skip: tuple[str, ...] = ()
) -> str:
    """A section's keys for the sample config: each key's meaning as a comment, then `key: default`.

    A key without a default value is written commented out with its value from `examples`.
    """
    examples = examples or {}
    lines: list[str] = []
    for k in keys(cls, skip=skip):
        if k.meaning:
            lines += _comment(k.meaning, indent)
        if k.value is None or k.value is dataclasses.MISSING:
            if k.key not in examples:
                raise ValueError(f"sample config: {cls.__name__}.{k.key} has no default; give it an example")
            lines.append(f"{indent}# {k.key}: {examples[k.key]}")
        else:
            lines.append(f"{indent}{k.key}: {yaml_value(k.value, k.hint)}")
    return "\n".join(lines) + "\n"


def key_summary(cls: type, indent: str = "", skip: tuple[str, ...] = (), prefix: str = "", lead: str = "") -> str:
    """A comment naming every key of a list section with its default: `url (required), type: auto, ...`."""
    parts = []
    for k in keys(cls, prefix, skip):
        if k.value is dataclasses.MISSING:
            parts.append(f"{k.key} (required)")
        elif k.value is None or k.described:
            parts.append(f"{k.key}/{k.key}_file" if k.secret else k.key)
        else:
            parts.append(f"{k.key}: {yaml_value(k.value, k.hint)}")
    return "\n".join(_comment(lead + ", ".join(parts) + ".", indent)) + "\n"
