"""A target's `probe:` block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telegraf_llm_input.config.loader import Duration
from telegraf_llm_input.lazy import lazy_import
from telegraf_llm_input.probenames import ProbeApi

if TYPE_CHECKING:
    from telegraf_llm_input import apis
else:  # the API rows, for `messages` only: a config without them loads no API module (~0.2 MiB)
    apis = lazy_import("telegraf_llm_input.apis")

MAX_TOKENS_CAP = 1024


@dataclass
class ProbeConfig:
    enabled: bool = False
    """Send probes to this target; when false, no probe request is ever sent. Off by default: a probe costs GPU
    time on the user's server."""
    every: Duration = 60.0
    """Period between probe starts, independent of the gather interval; results go out at the next gather (one
    point per probe, timestamped when it started)."""
    ps_every: Duration = 5.0
    """Ollama only: how often the probe looks at `/api/ps` (a cheap GET) to see a user's request end. On Ollama
    the probe is sent (at most once per `every`) only right after such a look, and without `keep_alive`: it
    moves the model's unload countdown by at most `ps_every` plus its own duration and never keeps an idle model
    loaded (an idle model: `skip_reason=model_idle`). Not used when `model` is set."""
    prompt: str | None = None
    """The prompt text (never logged or emitted; only its token count is). Default: a short counting prompt."""
    messages: list[dict[str, Any]] | None = None
    """Full chat messages instead of `prompt` (`openai_chat`, `ollama`, `lmstudio` only)."""
    max_tokens: int = 64
    """Output limit (1-1024). Reasoning models need more to reach the answer (`ttfa_ms`)."""
    temperature: float = 0.0
    """Sampling temperature."""
    model: str | None = None
    """Model name. Default: on Ollama and LM Studio a model loaded now (asked before every probe; none loaded: the
    probe is skipped, since a request would load one); elsewhere the first of `/v1/models`. A model named here is
    asked for even when that loads it (on Ollama: probed every `every`, also while nobody uses it, which keeps it
    loaded)."""
    timeout: Duration = 60.0
    """A probe not finished by then is reported as `error=timeout`."""
    api: ProbeApi = "openai_chat"
    """Wire API: `openai_chat` (`/v1/chat/completions`), `openai_completions` (`/v1/completions`), `ollama`
    (`/api/chat`, native NDJSON: adds `load_ms`, server prefill and decode rate), `llamacpp` (`/completion`, adds
    `timings`: server prefill, decode rate, `cache_tokens`), `lmstudio` (`/api/v0/chat/completions`,
    OpenAI-shaped, plus its `stats`). On Ollama the probe always speaks `ollama` (the server's own timings)."""

    def __post_init__(self) -> None:
        if self.prompt is not None and self.messages is not None:
            raise ValueError("give either prompt or messages, not both")
        if not 1 <= self.max_tokens <= MAX_TOKENS_CAP:
            raise ValueError(f"max_tokens must be between 1 and {MAX_TOKENS_CAP}")
        if self.every <= 0:
            raise ValueError("every must be > 0")
        if self.ps_every <= 0:
            raise ValueError("ps_every must be > 0")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        if self.messages is not None and not apis.PROBE_APIS[self.api].takes_messages:
            raise ValueError(f"api {self.api} takes a plain prompt, not messages")
        if self.messages is not None and not self.messages:
            raise ValueError("messages must not be empty")
