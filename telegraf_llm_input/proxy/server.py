"""The proxy: where clients connect, which requests are forwarded (exchange.py) and which answered here (the
metrics page), and one log line when the upstream stops answering (one when it is back)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from telegraf_llm_input.log import get_logger
from telegraf_llm_input.proxy import wire
from telegraf_llm_input.proxy.courtesy import Courtesy
from telegraf_llm_input.proxy.downstream import ClientConn, Handler, error_body
from telegraf_llm_input.proxy.exchange import Forward, Meter, StallWatch
from telegraf_llm_input.proxy.names import PAGE_PATH
from telegraf_llm_input.proxy.upstream import Upstream

log = get_logger("proxy")


class Meters(Protocol):
    def begin(self, method: str, target: str, t0_ns: int) -> Meter: ...
    def page(self) -> bytes: ...


class Proxy:
    def __init__(self, upstream: Upstream, meters: Meters, *, page_path: str = PAGE_PATH, timeout_s: float = 600.0):
        self.upstream = upstream
        self.meters = meters
        self.page_path = page_path.encode()
        self.timeout_s = timeout_s
        """Longest wait for the answer's head, and for each next piece of it (a model's prefill can take minutes)."""
        self.clients: set[ClientConn] = set()
        self.tasks: set[asyncio.Task] = set()
        """Upstream connections being made."""
        self._down_since: float | None = None
        self.loop: asyncio.AbstractEventLoop
        """The loop it serves on, set by `start` (held: asking asyncio for it costs a `getpid` each time)."""
        self.stalls: StallWatch
        """The exchanges waiting on the upstream (set by `start`)."""
        self.courtesy = Courtesy()
        """Called after a write whose reader should run before the proxy measures (courtesy.py)."""

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        self.loop = loop = asyncio.get_running_loop()
        self.stalls = StallWatch(loop, self.timeout_s)
        return await loop.create_server(lambda: ClientConn(self._handle, self.clients), host, port)

    async def close(self) -> None:
        """Drop every connection (after the listener is closed)."""
        for client in list(self.clients):
            client.abort()
        self.upstream.close()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _handle(self, client: ClientConn, request: wire.Request) -> Handler:
        target, page = request.target, self.page_path
        if target.startswith(page) and (len(target) == len(page) or target[len(page)] == 0x3F):  # "?"
            return Page(self, client, request)
        return Forward(self, client, request)

    def down(self, why: str) -> None:
        """One warning when the upstream stops answering (one info when it is back); each refusal is debug."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("proxy: %s; clients get 502 until it is back", why)
        else:
            log.debug("proxy: %s", why)

    def back(self) -> None:
        if self._down_since is not None:
            log.info("proxy: upstream %s answers again", self.upstream.address)
            self._down_since = None


class Page:
    """The proxy's own metrics page (GET or HEAD), answered once the request is read."""

    def __init__(self, proxy: Proxy, client: ClientConn, request: wire.Request):
        self.proxy = proxy
        self.client = client
        self.request = request
        if request.expect_continue:  # its body is read (then ignored): the client need not wait to send it
            client.write(wire.CONTINUE)

    def request_body(self, data: bytes) -> None:
        pass

    def request_end(self) -> None:
        method, close = self.request.method, not self.request.keep_alive
        head = [(b"connection", b"close")] if close else []
        if method not in (b"GET", b"HEAD"):
            body = error_body("method_not_allowed", "the metrics page answers GET only")
            answer = wire.answer(405, b"Method Not Allowed", [(b"content-type", b"application/json"), *head], body)
        else:
            page = self.proxy.meters.page()
            answer = wire.answer(
                200, b"OK", [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8"), *head], page
            )
            if method == b"HEAD":
                answer = answer[: len(answer) - len(page)]
        self.client.write(answer)
        self.client.done(self, close=close)

    def client_flush(self) -> None:
        pass

    def client_gone(self) -> None:
        pass

    def client_writable(self, ok: bool) -> None:
        pass
