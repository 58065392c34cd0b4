"""The agent's YAML config: top-level sections, `${ENV}` expansion, loading and checking.

One package for all of it, below everything that uses it: each section is a dataclass in its own module
(`targets`, `gpu`, `host`, `requestlog`, `outputs`, `probe`), filled and checked by `loader`; none of
them imports a source or a sink, so a config can be read, checked and documented without them.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from telegraf_llm_input.config.gpu import GpuConfig
from telegraf_llm_input.config.host import HostConfig
from telegraf_llm_input.config.loader import ConfigError, Duration, load_section
from telegraf_llm_input.config.outputs import OutputConfig
from telegraf_llm_input.config.requestlog import LogConfig
from telegraf_llm_input.config.targets import DiscoveryConfig, TargetConfig
from telegraf_llm_input.config.yamlfile import MAX_BYTES, load_yaml, read_file, read_text
from telegraf_llm_input.lazy import lazy_import

if TYPE_CHECKING:
    from importlib import resources
else:  # for `sample-config` only: it brings tempfile, shutil, bz2, lzma and random, which a run never uses
    resources = lazy_import("importlib.resources")


@dataclass
class AgentConfig:
    interval: Duration = 10.0
    """Gather period when the agent times itself (`--signal none`). Under Telegraf with `signal = "STDIN"`,
    Telegraf's own interval decides."""
    gather_timeout: Duration | None = None
    """Deadline for every source in a gather; a late source's results are dropped and counted. Default: 80% of
    `interval`."""
    hostname: str | None = None
    """Value of the `host` tag. Default: the machine's hostname."""
    omit_hostname: bool = False
    """No `host` tag at all."""
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    """Lowest level logged to stderr (with Telegraf's prefixes `E!`, `W!`, `I!`, `D!`)."""
    state_dir: str | None = None
    """Where log positions and output buffers survive restarts. Default: none (kept in memory)."""

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("interval must be > 0")
        if self.gather_timeout is not None and self.gather_timeout <= 0:
            raise ValueError("gather_timeout must be > 0")

    @property
    def deadline(self) -> float:
        return self.gather_timeout if self.gather_timeout is not None else 0.8 * self.interval


@dataclass
class Config:
    agent: AgentConfig = field(default_factory=AgentConfig)
    tags: dict[str, str] = field(default_factory=dict)
    """Added to every metric, e.g. `task: algorithm_reasoning` (a metric's own tags win)."""
    host: HostConfig = field(default_factory=HostConfig)
    targets: list[TargetConfig] | None = None
    """Model servers; `[]`: none. Default: absent, so servers are looked for on the usual local ports (`discovery`)."""
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    gpu: GpuConfig = field(default_factory=GpuConfig)
    logs: list[LogConfig] = field(default_factory=list)
    """Request logs to aggregate per interval."""
    outputs: list[OutputConfig] = field(default_factory=list)
    """Where metrics go; empty means stdout (what Telegraf reads)."""

    def __post_init__(self) -> None:
        _unique(
            "targets", [(t.name, "name") if t.name else (t.display_name, "url") for t in self.targets or []], "target"
        )
        _unique("logs", [(lg.name, "name") if lg.name else (lg.path, "path") for lg in self.logs], "log")

    def global_tags(self) -> dict[str, str]:
        tags = dict(self.tags)
        if not self.agent.omit_hostname:
            tags.setdefault("host", self.agent.hostname or socket.gethostname())
        return tags


def _unique(section: str, names: list[tuple[str, str]], what: str) -> None:
    """Each entry's name (its `target`/`log` tag and its `llm_agent` source) must differ, given or derived."""
    first: dict[str, int] = {}
    for i, (name, key) in enumerate(names):
        if name in first:
            how = "" if key == "name" else f" (the name derived from its {key})"
            raise ConfigError(
                f"{section}[{i}].{key}",
                f"{what} name {name!r}{how} is already used by {section}[{first[name]}]; give each a distinct `name:`",
            )
        first[name] = i


_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, path: str = "", environ: Mapping[str, str] | None = None) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string; `$$` is a literal `$`."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name: str = match.group(1)
            default: str | None = match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(path, f"environment variable {name} is not set")

        return _ENV.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: expand_env(v, f"{path}.{k}" if path else str(k), env) for k, v in value.items()}
    return value


def parse_config(data: Any) -> Config:
    data = expand_env(data if data is not None else {})
    return load_section(Config, data)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read (`-` is stdin), expand and validate; every problem is a ConfigError whose text starts with the file.
    At most `yamlfile.MAX_BYTES + 1` bytes are read: `--config /dev/zero` is an error, not a hang; so is a FIFO
    nobody writes to (`yamlfile.read_file`)."""
    name = str(path)
    try:
        if name == "-":  # `telegraf-llm-input sample-config | telegraf-llm-input check-config --config -`
            name = "<stdin>"
            raw = sys.stdin.buffer.read(MAX_BYTES + 1)
        else:
            raw = read_file(path)
    except FileNotFoundError:
        raise ConfigError(name, "file not found") from None
    except ConfigError as exc:  # a directory, a silent FIFO
        raise ConfigError(name, exc.problem) from None
    except OSError as exc:
        raise ConfigError(name, f"cannot read: {exc.strerror or exc}") from None
    try:
        return parse_config(load_yaml(read_text(raw)))
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc.path}" if exc.path else name, exc.problem) from None


def sample_config() -> str:
    return resources.files("telegraf_llm_input").joinpath("sample-config.yaml").read_text(encoding="utf-8")
