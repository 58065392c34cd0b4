"""A FastAPI-style JSON `/metrics` (e.g. `{"response_time_ms": 812, "output_tokens": 10423}`),
mapped field by field by the target's `json_fields` (path, gauge/counter, float/int).
Counters also give `<name>_per_s` (`_total` dropped) over the interval."""

from __future__ import annotations

from telegraf_llm_input.config.targets import JsonFieldConfig, TargetConfig
from telegraf_llm_input.http import FetchError
from telegraf_llm_input.servers.base import Fetcher, ModelReading, Reading

TYPE = "json"
NAME = "json"
_MISSING = object()


def lookup(document: object, path: str) -> object:
    """Value at a dotted path (`a.b.0.c`: list indexes allowed), or _MISSING."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def read_fields(document: object, fields: dict[str, JsonFieldConfig]) -> ModelReading:
    reading = ModelReading(None, rated=None)
    for name, spec in fields.items():
        value = lookup(document, spec.path)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # absent or not a number: no field, never a guess
        value = int(value) if spec.type == "int" else float(value)
        (reading.counters if spec.kind == "counter" else reading.gauges)[name] = value
    return reading


class JsonAdapter:
    server_type = TYPE

    def __init__(self, fields: dict[str, JsonFieldConfig]):
        self.fields = fields

    async def read(self, fetch: Fetcher) -> Reading:
        path = fetch.target.metrics_path or "/metrics"
        document = await fetch.json(path)
        reading = read_fields(document, self.fields)
        if self.fields and not (reading.gauges or reading.counters):
            raise FetchError("bad_body", f"{fetch.target.display_name}{path}: none of the json_fields paths found")
        return Reading([reading], server_type=TYPE)


def make(target: TargetConfig) -> JsonAdapter:
    return JsonAdapter(target.json_fields)
