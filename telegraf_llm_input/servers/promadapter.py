"""An adapter that is only a table (vLLM, SGLang, TGI, the proxy): GET the metrics page, read it through the table.

The reading goes through the target's `PageReader`: a page of the same shape as the last one is read by its
compiled plan (servers/readplan.py), any other by the parser and `read_page`.
"""

from __future__ import annotations

import time

from telegraf_llm_input.http import FetchError
from telegraf_llm_input.servers.base import Fetcher, Reading, version_tags
from telegraf_llm_input.servers.promtable import PromTable
from telegraf_llm_input.servers.readplan import PageReader

VERSION_EVERY_S = 600.0
"""How often a version that costs a request of its own is asked again (also after every outage)."""


class PromAdapter:
    def __init__(self, table: PromTable):
        self.table = table
        self.server_type = table.server_type
        self.version: str | None = None
        """The server's version as last answered (None: unknown)."""
        self._version_at: float | None = None
        """`time.monotonic()` of the last ask; None: ask on the next answer."""
        self.reader = PageReader(table)

    async def default_model(self, fetch: Fetcher) -> str | None:
        return None

    async def _ask_version(self, fetch: Fetcher) -> None:
        """`table.version`, at most every VERSION_EVERY_S; an error or odd answer keeps the last one."""
        if self.table.version is None:
            return
        now = time.monotonic()
        if self._version_at is not None and now - self._version_at < VERSION_EVERY_S:
            return
        self._version_at = now
        path, key = self.table.version
        try:
            answer = await fetch.json(path, retries=0)
        except FetchError:
            return
        if isinstance(answer, dict) and version_tags(answer.get(key)):
            self.version = answer[key]

    async def read(self, fetch: Fetcher) -> Reading:
        try:
            path = fetch.target.metrics_path or self.table.path
            answer = await fetch.get(path)
            size = len(answer.body)
            scanned = await fetch.sized(
                size, self.reader.scan, answer, f"{fetch.target.display_name}{path}", fetch.deadline
            )
            model = await self.default_model(fetch) if self.table.model_label is None else None
        except Exception:
            self._version_at = None  # down: it may come back as another version
            raise
        await self._ask_version(fetch)
        return Reading(
            await fetch.sized(size, self.reader.readings, scanned, model),
            server_type=self.server_type,
            tags=version_tags(self.version),
        )
