"""The real proxy for tests: in a thread with its own event loop (sync clients like `openai` and `ollama`
call it as they would a server), or as the real command in a process of its own (memory measured apart)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from telegraf_llm_input.proxy.loop import new_loop
from telegraf_llm_input.proxy.measure import Measured, Meters
from telegraf_llm_input.proxy.server import Proxy
from telegraf_llm_input.proxy.upstream import Address, Upstream
from tests.support.procs import ManagedProcess, free_port, http_ok, wait_until


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the proxy sends on `sock` until it closes the connection (give `sock` a timeout: a hang then
    fails the test)."""
    got = b""
    while data := sock.recv(65536):
        got += data
    return got


class ThreadProxy:
    def __init__(self, upstream: str, **kw) -> None:
        self.upstream = upstream
        self.kw = kw
        self.meters = Meters()
        self.loop = new_loop()  # the command's own
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.proxy = Proxy(Upstream(Address.parse(self.upstream)), self.meters, **self.kw)
        self.server = self.loop.run_until_complete(self.proxy.start("127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> ThreadProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.proxy.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(close()))
        self._thread.join(10)

    def __enter__(self) -> ThreadProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def call(self, func: Callable[[], object]) -> object:
        """`func()` on the proxy's loop (reading its meters while it runs)."""
        done: dict[str, object] = {}
        ready = threading.Event()

        def run() -> None:
            done["value"] = func()
            ready.set()

        self.loop.call_soon_threadsafe(run)
        ready.wait(10)
        return done["value"]

    def records(self, n: int, timeout: float = 10.0) -> list[Measured]:
        """The last n finished requests, once n have finished (the proxy ends its record just after the client
        got the last byte)."""
        deadline = time.monotonic() + timeout
        while len(self.meters.recent) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.call(lambda: list(self.meters.recent)[-n:]))  # type: ignore[call-overload]

    def page(self) -> str:
        return httpx.get(f"{self.url}/proxy/metrics", timeout=10).raise_for_status().text


class ProcessProxy:
    """`telegraf-llm-input proxy` as a user starts it."""

    def __init__(self, upstream: str, workdir: Path, *extra: str) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "telegraf_llm_input", "proxy", "--upstream", upstream]
        self.argv = [*argv, "--listen", f"127.0.0.1:{self.port}", *extra]
        self.log = workdir / f"proxy-{self.port}.log"
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ProcessProxy:
        self.process = ManagedProcess(self.argv, self.log)
        wait_until(http_ok(f"{self.url}/proxy/metrics"), 30, "proxy", self.process.proc, self.log)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
