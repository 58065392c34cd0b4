"""Typed config sections: dataclasses filled from YAML with precise, one-line errors.

Each source declares its own section as a dataclass; `load_section` fills it, checking
types, unknown keys, durations and byte sizes, and reading `<name>_file` secrets.
Errors carry the key path (`targets[1].timeout`) so a user can find the mistake.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class ConfigError(Exception):
    """A config problem: `str()` is one line naming the key path and the problem."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


DURATION = _Marker("duration")
BYTES = _Marker("bytes")
SECRET = _Marker("secret")

Duration = Annotated[float, DURATION]
"""Seconds; written `10s`, `500ms`, `1m`, `1h30m`, or a bare number of seconds; MIN_DURATION_S to MAX_DURATION_S."""
MIN_DURATION_S = 0.1
"""No setting is meaningful below 100 ms: `interval: 1ms` would burn a core and never finish a gather."""
MAX_DURATION_S = 7 * 86400.0
"""Nor above a week: `interval: 1e12` is a typo, not a plan, and a timer that long never fires in practice."""
ByteSize = Annotated[int, BYTES]
"""Bytes; written `8MiB`, `100MB`, `512KiB`, or a bare number of bytes."""
Secret = Annotated[str, SECRET]
"""A string that may also be given as `<key>_file: /path` (file content, stripped)."""


class WrittenInt(int):
    """A YAML integer that keeps its text: a string setting takes it as written (`X-Key: 0123` is "0123", not
    the octal 83 YAML 1.1 reads; `1_000`, `0x1F`, `12:30` likewise)."""

    written: str


class WrittenFloat(float):
    """A YAML float that keeps its text (`1.10` stays "1.10", `.5` ".5")."""

    written: str


def as_written(value: int | float) -> str:
    """A number's text as the file wrote it (a config built in code: its usual spelling)."""
    return getattr(value, "written", None) or str(value)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_BYTES = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?", re.IGNORECASE)
_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}


def parse_duration(value: Any) -> float:
    """Seconds from `10s`, `500ms`, `1m30s` or a bare number (seconds)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 10s, 500ms or 1m, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return _float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(f"expected a duration like 10s, 500ms or 1m, got {value!r}") from None
        if seconds < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return seconds
    raise ValueError(f"expected a duration like 10s, 500ms or 1m, got {value!r}")


def _float(value: int | float) -> float:
    """A YAML number as a float; an integer too big for one is infinite (then refused as not finite)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def check_duration(seconds: float, written: Any) -> float:
    """`seconds` when it is a usable setting (MIN_DURATION_S to MAX_DURATION_S); ValueError naming what was
    written."""
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration, got {written!r}")
    if seconds < MIN_DURATION_S:
        raise ValueError(f"must be at least 100ms, got {written!r}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"must be at most 7d (a week), got {written!r}")
    return seconds


def check_http_url(url: str, *, path_allowed: bool) -> None:
    """ValueError unless `url` is http(s)://host[:port] (a port in 1-65535), with a path only if allowed."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc}): {_redact(url)!r}") from None
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"port must be a number in 1-65535, got {_redact(url)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be http(s)://host[:port], got {_redact(url)!r}")
    if port == 0 or (parts.netloc.endswith(":") and port is None):
        raise ValueError(f"port must be a number in 1-65535, got {_redact(url)!r}")
    if not path_allowed and parts.path not in ("", "/"):
        raise ValueError(
            f"must be http(s)://host[:port] without a path, got path {parts.path!r} "
            "(a page elsewhere than the default: set `metrics_path`)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"must not have a query or fragment, got {_redact(url)!r}")


def _redact(url: str) -> str:
    """The URL without user:password, for an error message."""
    head, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{head}://***@{rest.split('@', 1)[1]}"
    return url


def parse_bytes(value: Any) -> int:
    """Bytes from `8MiB`, `100MB`, `4096` (bare number = bytes)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 8MiB or 100MB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value!r}")
        return int(value)
    if isinstance(value, str):
        match = _BYTES.fullmatch(value.strip())
        if match:
            size = float(match.group(1)) * _BYTE_UNITS[(match.group(2) or "").lower()]
            if math.isfinite(size):
                return int(size)
            raise ValueError(f"must be a finite size, got {value!r}")
    raise ValueError(f"expected a size like 8MiB or 100MB, got {value!r}")


def _describe(tp: Any) -> str:
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    return getattr(tp, "__name__", str(tp))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def convert(tp: Any, value: Any, path: str) -> Any:
    """Check and convert one YAML value against a type hint."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extras = get_args(tp)
        if SECRET in extras:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = as_written(value)  # as any string setting takes a YAML number (`password: 0123`)
            elif not isinstance(value, str):
                raise ConfigError(path, _not_a_string_secret(value, path))
        try:
            if DURATION in extras:
                return check_duration(parse_duration(value), value)
            if BYTES in extras:
                return parse_bytes(value)
        except ValueError as exc:
            raise ConfigError(path, str(exc)) from None
        return convert(base, value, path)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        tagged = _tagged_options(options)
        if tagged is not None and isinstance(value, dict):
            kind = value.get("type")
            if kind not in tagged:
                raise ConfigError(_join(path, "type"), f"must be one of {', '.join(map(repr, tagged))}, got {kind!r}")
            return load_section(tagged[kind], value, path)
        real = [o for o in options if o is not type(None)]
        if len(real) == 1:
            return convert(real[0], value, path)
        errors = []
        for option in real:
            try:
                return convert(option, value, path)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(path, " or ".join(dict.fromkeys(errors)))
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        raise ConfigError(path, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    if origin in (list, list):
        (item,) = get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list, got {type(value).__name__}")
        return [convert(item, v, _join(path, i)) for i, v in enumerate(value)]
    if origin in (dict, dict):
        ktp, vtp = get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {type(value).__name__}")
        return {convert(ktp, k, _join(path, str(k))): convert(vtp, v, _join(path, str(k))) for k, v in value.items()}
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return load_section(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = _float(value)
            if not math.isfinite(number):
                raise ConfigError(path, f"must be a finite number, got {value!r}")
            return number
        raise ConfigError(path, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return as_written(value)
        if isinstance(value, bool):  # its text is gone (`yes`, `on`, `True` all read as true): ask for quotes
            raise ConfigError(
                path, f"YAML read this as {str(value).lower()} (yes/no/on/off/true/false): put it in quotes"
            )
        raise ConfigError(path, f"expected a string, got {value!r}")
    raise ConfigError(path, f"unsupported config type {_describe(tp)}")


def _not_a_string_secret(value: Any, path: str) -> str:
    """Why a secret YAML did not read as a string is refused, without a word of its value."""
    key = path.rsplit(".", 1)[-1]
    why = "true or false" if isinstance(value, bool) else "a list" if isinstance(value, list) else "not text"
    return f"YAML read this secret as {why}: put it in quotes, or use `{key}_file`; the value is not shown"


def _read_secret_file(file_path: Any, path: str) -> str:
    if not isinstance(file_path, str):
        raise ConfigError(path, f"expected a file path, got {file_path!r}")
    try:
        return Path(file_path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(path, f"cannot read secret file {file_path!r}: {exc.strerror or exc}") from None


T = TypeVar("T", bound="DataclassInstance")


def load_section(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are errors.

    A field typed `Secret` named `token` may instead be given as `token_file`.
    `__post_init__` may raise ValueError to reject a combination; it is reported at `path`, or
    ConfigError(key, problem) to name the key (`key` relative to this section).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls, include_extras=True)
    by_name = {f.name: f for f in dataclasses.fields(cls) if f.init}
    # A field may be spelt differently in YAML (`from:` is a Python keyword): metadata={"key": "from"}.
    fields = {f.metadata.get("key", name): f for name, f in by_name.items()}
    hints = {key: hints[f.name] for key, f in fields.items()}
    secret_files = {
        f"{name}_file": name
        for name in fields
        if get_origin(hints[name]) is Annotated
        and SECRET in get_args(hints[name])[1:]
        or _is_optional_secret(hints[name])
    }
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(_join(path, str(key)), "keys must be strings")
        if key in secret_files:
            target = secret_files[key]
            if target in data:
                raise ConfigError(_join(path, key), f"give either {target} or {key}, not both")
            kwargs[fields[target].name] = _read_secret_file(value, _join(path, key))
            continue
        if key not in fields:
            known = ", ".join(sorted(list(fields) + list(secret_files)))
            raise ConfigError(_join(path, key), f"unknown key (known keys: {known})")
        kwargs[fields[key].name] = convert(hints[key], value, _join(path, key))
    missing = [
        key
        for key, f in fields.items()
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(_join(path, missing[0]), "is required")
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # __post_init__ naming the key (relative to this section)
        raise ConfigError(_join(path, exc.path) if exc.path else path, exc.problem) from None
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None


def _tagged_options(options: tuple[object, ...]) -> dict[str, type] | None:
    """For a union of dataclasses that each have `type: Literal[...]`, map each tag to its class."""
    table: dict[str, type] = {}
    for option in options:
        if option is type(None):
            continue
        if not (isinstance(option, type) and dataclasses.is_dataclass(option)):
            return None
        hint = get_type_hints(option).get("type")
        if get_origin(hint) is not Literal:
            return None
        for tag in get_args(hint):
            table[tag] = option
    return table or None


def _is_optional_secret(tp: Any) -> bool:
    if get_origin(tp) in (Union, types.UnionType):
        return any(get_origin(a) is Annotated and SECRET in get_args(a)[1:] for a in get_args(tp))
    return False
