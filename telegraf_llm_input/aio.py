"""`within(coro, seconds)`: `asyncio.wait_for` without the task 3.11's makes for every call (3.10 has only that).

Every scrape runs under one or two of these; a task each costs more than the timeout itself."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def within(coro: Coroutine[Any, Any, T], seconds: float) -> T:
        """The coroutine's result, or TimeoutError after `seconds` (the coroutine is cancelled)."""
        async with asyncio.timeout(seconds):
            return await coro

else:
    within = asyncio.wait_for
