"""Gives other sources' metrics the server type the server source detected for `type: auto` targets."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from telegraf_llm_input.config import Config
from telegraf_llm_input.metric import Metric

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config

FOLLOWERS = ("llm_process", "llm_probe")


class DetectedServerType:
    """A Processor: copies `server_type` from a target's `llm_server` onto its `llm_process` and `llm_probe`.

    Only the server source sees what answers; the process source knows just the configured type and the
    probe can only guess from its API. The last detected type is kept, so the tag (and the series) does
    not flip back while the server is down.
    """

    def __init__(self) -> None:
        self._detected: dict[str, str] = {}

    def process(self, metrics: list[Metric]) -> list[Metric]:
        for m in metrics:
            if m.measurement == "llm_server" and m.tags.get("server_type") not in (None, "", "auto"):
                self._detected[m.tags.get("target", "")] = m.tags["server_type"]
        return [
            replace(m, tags={**m.tags, "server_type": self._detected[m.tags["target"]]})
            if m.measurement in FOLLOWERS
            and m.tags.get("target") in self._detected
            and m.tags.get("server_type") != self._detected[m.tags["target"]]
            else m
            for m in metrics
        ]


def build(config: Config) -> list[DetectedServerType]:
    auto = any(t.type == "auto" for t in config.targets or [])
    return [DetectedServerType()] if auto else []
