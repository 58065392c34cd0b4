"""Line protocol on stdout: what Telegraf's execd input reads."""

from __future__ import annotations

import sys
from typing import BinaryIO, Mapping, Sequence

from telegraf_llm_input.lineprotocol import encode_batch
from telegraf_llm_input.metric import Metric


class StdoutSink:
    """Writes one gather's lines in a single write and flushes, so Telegraf never sees half a gather."""

    name = "stdout"

    def __init__(self, stream: BinaryIO | None = None):
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._lines = 0
        self._dropped = 0
        self._errors = 0

    async def write(self, metrics: Sequence[Metric]) -> None:
        batch = encode_batch(metrics)
        self._dropped += batch.dropped
        if not batch.text:
            return
        try:
            self._stream.write(batch.text.encode("utf-8"))
            self._stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            self._errors += 1
            raise
        self._lines += batch.lines

    def stats(self) -> Mapping[str, int]:
        return {"lines_written": self._lines, "metrics_dropped": self._dropped}

    async def close(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
