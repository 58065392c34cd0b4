"""The APIs a model server answers, as table rows: one small module per family, one `Api` per endpoint.

Used by the probe (the request it sends, the stream it reads) and by anything that watches real traffic
(a pass-through proxy): `classify(method, path)` says which API a request is, `request_info(body)` reads its
`model` and `stream`, and `StreamReader(api, stream)` reads the answer as it passes (`apis/reader.py`).
Adding an API: a row in its family's module (paths, framing, `interpret`, optionally the probe's body) and
its module's `APIS` here.
"""

from __future__ import annotations

from typing import NamedTuple

from telegraf_llm_input.apis import llamacpp, lmstudio, ollama, openai
from telegraf_llm_input.apis.base import Api
from telegraf_llm_input.jsontext import loads_bytes
from telegraf_llm_input.probenames import ProbeApi

APIS: dict[str, Api] = {api.name: api for family in (ollama, openai, llamacpp, lmstudio) for api in family.APIS}
"""Every API by name."""
_BY_ROUTE: dict[tuple[str, str], Api] = {(api.method, path): api for api in APIS.values() for path in api.paths}

PROBE_APIS: dict[ProbeApi, Api] = {  # every probe API name (probenames) and its row
    "openai_chat": openai.CHAT,
    "openai_completions": openai.COMPLETIONS,
    "ollama": ollama.CHAT,
    "llamacpp": llamacpp.COMPLETION,
    "lmstudio": lmstudio.CHAT,
}


def classify(method: str, path: str) -> Api | None:
    """The API a request is (`POST /v1/chat/completions?x=1` -> openai_chat), or None for anything else."""
    route = path.split("?", 1)[0].rstrip("/") or "/"
    return _BY_ROUTE.get((method.upper(), route))


class RequestInfo(NamedTuple):
    model: str | None
    stream: bool


def request_info(api: Api, body: bytes) -> RequestInfo:
    """`model` and `stream` of a JSON request body; the API's default when `stream` is absent or not a bool.

    A body that is not a JSON object gives no model (the server will answer it with an error)."""
    try:
        doc = loads_bytes(body) if body else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    model, stream = doc.get("model"), doc.get("stream")
    return RequestInfo(
        model if isinstance(model, str) and model else None,
        (stream if isinstance(stream, bool) else api.stream_default) and api.framing != "json",
    )
