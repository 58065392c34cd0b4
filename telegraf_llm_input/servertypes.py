"""The server types: one entry each, the one list every other part reads.

The config's `type:` values (`ServerType`: a `Literal` for mypy, tied to this list by a test), discovery's
default ports, the order `type: auto` tries the types in, the adapters to import (`servers/`), the
dashboards' server lists and the fakes the tests run all come from `SERVERS`. What a type gives (its fields, its detection `Rule`s)
lives in its own module (`servers/<module>.py`), imported only when that type is used.

Pure data with no imports of the package: the config (bottom) and the adapters (above) both read it, and
reading it loads no adapter (start-up time and memory sit beside the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ServerType = Literal[
    "auto", "proxy", "vllm", "sglang", "tgi", "llamacpp", "ollama", "lmstudio", "openai", "mlx", "json", "prometheus"
]
"""A target's `type:`: `auto` and every type in `SERVERS` (mypy checks each entry's type is here)."""


@dataclass(frozen=True)
class Server:
    type: ServerType
    """A target's `type:` and the `server_type` tag."""
    module: str
    """Its adapter: `telegraf_llm_input.servers.<module>` (`TYPE`, `NAME`, `make`, and `DETECT` rules when
    the server can be recognised from what it answers)."""
    port: int | None = None
    """Its usual port, which discovery tries; None: it has none of its own."""


SERVERS: tuple[Server, ...] = (
    Server("proxy", "proxy", port=8434),  # first: it passes every other path (`/metrics` too) to the server behind it
    Server("vllm", "vllm", port=8000),
    Server("sglang", "sglang", port=30000),
    Server("tgi", "tgi", port=3000),
    Server("llamacpp", "llamacpp", port=8080),
    Server("ollama", "ollama", port=11434),
    Server("lmstudio", "lmstudio", port=1234),
    Server("openai", "openai"),
    Server("mlx", "mlx"),
    Server("json", "jsonpage"),
    Server("prometheus", "generic_prometheus"),
)
"""In detection order: `type: auto` tries the `DETECT` rules of each module that has them, most specific
first (`openai` after the servers that also answer `/v1/models`)."""

TYPES: tuple[ServerType, ...] = tuple(s.type for s in SERVERS)
MODULES: dict[str, str] = {s.type: s.module for s in SERVERS}
"""Server type -> its module under `telegraf_llm_input.servers`."""
DEFAULT_PORTS: dict[str, int] = {s.type: s.port for s in SERVERS if s.port is not None}
"""Server type -> the port discovery tries for it."""
