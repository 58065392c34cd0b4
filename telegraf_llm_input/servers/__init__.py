"""Server adapters, one small module per server type, and `type: auto` detection.

A module gives `TYPE`, `make(target) -> Adapter` and, when the server can be recognised from
what it answers, `async detect(answers) -> bool`. Adding a server: one module, one line below.
"""

from __future__ import annotations

from telegraf_llm_input.http import FetchError
from telegraf_llm_input.servers import json, llamacpp, lmstudio, mlx, ollama, openai, prometheus, sglang, tgi, vllm
from telegraf_llm_input.sources.server import Adapter, Fetcher, Reading
from telegraf_llm_input.targets import ServerType, TargetConfig

MODULES = {m.TYPE: m for m in (vllm, sglang, tgi, llamacpp, ollama, lmstudio, openai, mlx, json, prometheus)}
DETECT_ORDER = (vllm, sglang, tgi, llamacpp, ollama, lmstudio, openai)
"""Most specific first; `openai` last since many servers also answer `/v1/models`."""


def field_servers() -> dict[str, list[str]]:
    """llm_server field -> the server types that give it, from their tables (the schema's `servers` notes)."""
    out: dict[str, list[str]] = {}
    for module in MODULES.values():
        table = getattr(module, "TABLE", None)
        fields = (table.fields() if table is not None else set()) | set(getattr(module, "FIELDS", ()))
        for name in sorted(fields):
            out.setdefault(name, []).append(module.NAME)
    return out


class Answers:
    """What a server answers on a few paths, each fetched at most once (no retry) while detecting."""

    def __init__(self, fetch: Fetcher):
        self._fetch = fetch
        self._cache: dict[str, object] = {}
        self.errors: list[FetchError] = []

    async def text(self, path: str) -> str | None:
        if path not in self._cache:
            try:
                self._cache[path] = await self._fetch.text(path, retries=0)
            except FetchError as exc:
                self.errors.append(exc)
                self._cache[path] = None
        return self._cache[path]  # type: ignore[return-value]

    async def json(self, path: str):
        text = await self.text(path)
        if text is None:
            return None
        import json as jsonlib
        try:
            return jsonlib.loads(text)
        except ValueError:
            return None


async def detect(fetch: Fetcher) -> ServerType | None:
    """The server type at the target, or None. Raises the first error when nothing answered at all."""
    answers = Answers(fetch)
    for module in DETECT_ORDER:
        if await module.detect(answers):
            return module.TYPE
    if answers.errors and all(e.kind in ("refused", "timeout", "tls") for e in answers.errors):
        raise answers.errors[0]
    return None


class AutoAdapter:
    """`type: auto`: identify the server on first contact, then behave as that type."""

    server_type = "auto"

    def __init__(self, target: TargetConfig) -> None:
        self.target = target
        self.resolved: Adapter | None = None

    async def read(self, fetch: Fetcher) -> Reading:
        if self.resolved is None:
            kind = await detect(fetch)
            if kind is None:
                raise FetchError("unknown", f"{fetch.target.display_name}: answers, but is no server type we know "
                                            "(set `type:`)")
            self.resolved = MODULES[kind].make(self.target)
        return await self.resolved.read(fetch)


def make_adapter(target: TargetConfig) -> Adapter:
    if target.type == "auto":
        return AutoAdapter(target)
    return MODULES[target.type].make(target)
