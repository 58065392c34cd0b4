"""The proxy's connections: each client request forwarded to the upstream and its answer streamed back.

One task per client connection, h11 on both sides. A request's body is sent upstream as it arrives and the
answer is sent back chunk by chunk as it arrives: each write waits for the socket to drain, so a slow client
slows the upstream read and a slow upstream the body upload (TCP back-pressure both ways, a few 64 KiB buffers
per exchange whatever the body size). While the answer streams, the client's reader is watched (a callback, no
task): its EOF or reset (the client went away) drops the upstream connection at once, which is how model servers
learn to stop generating. Faults the client can still be told about get a short JSON error: 502 (upstream refused,
unreachable, closed before answering), 504 (no answer head within `timeout_s`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Protocol

import h11

from telegraf_llm_input.log import get_logger
from telegraf_llm_input.proxy import headers as hdr
from telegraf_llm_input.proxy.h11stream import READ_BYTES, ClientGone, ClientReader, Closed, H11Stream, UpstreamClosed
from telegraf_llm_input.proxy.names import PAGE_PATH
from telegraf_llm_input.proxy.upstream import Upstream, UpstreamError

log = get_logger("proxy")

REPLAY_BYTES = 1 << 20
"""Request bodies up to this size are kept until the answer starts, to resend them once on a fresh connection
when a kept-alive upstream connection turns out to be closed (the server never saw the request)."""
DISCARD_S = 1.0
"""After an early error answer, how long the rest of a request body is read and dropped (closing with unread
bytes would reset the connection and could lose the answer)."""


class Exchange(Protocol):
    """What measures one forwarded request (proxy/measure.py); the server only reports what passes."""

    def request_data(self, data: bytes) -> None: ...
    def sent(self) -> None:
        """The whole request went upstream."""
        ...

    def response(self, t_ns: int, status: int, headers: hdr.Headers) -> None: ...
    def data(self, t_ns: int, data: bytes) -> None: ...
    def end(self, t_ns: int, outcome: str) -> None:
        """`outcome`: ok, cancelled (the client left), or an upstream fault: refused, timeout, closed, tls,
        unreachable, bad_response."""
        ...


class Meters(Protocol):
    def begin(self, method: str, target: str, t0_ns: int) -> Exchange: ...
    def page(self) -> bytes: ...


@dataclass
class _Request:
    """The request as sent upstream, and what is kept of its body for one resend."""

    head: h11.Request
    kept: bytearray = field(default_factory=bytearray)
    replayable: bool = True
    body_done: bool = False


class Proxy:
    def __init__(self, upstream: Upstream, meters: Meters, *, page_path: str = PAGE_PATH, timeout_s: float = 600.0):
        self.upstream = upstream
        self.meters = meters
        self.page_path = page_path
        self.timeout_s = timeout_s
        """Longest wait for the answer's head, and for each next piece of it (a model's prefill can take minutes)."""
        self._clients: set[H11Stream] = set()
        self._tasks: set[asyncio.Task] = set()
        self._down_since: float | None = None

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        """`asyncio.start_server` with a `ClientReader` per connection (the same steps it takes)."""
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: asyncio.StreamReaderProtocol(ClientReader(READ_BYTES), self._client), host, port
        )

    async def close(self) -> None:
        """Drop every connection (after the listener is closed) and wait until their tasks are over."""
        for client in list(self._clients):
            client.abort()
        self.upstream.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        down = H11Stream(h11.SERVER, reader, writer, ClientGone)
        self._clients.add(down)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        clean = False
        try:
            while True:
                event = await down.next_event()
                if not isinstance(event, h11.Request):
                    clean = isinstance(event, h11.ConnectionClosed)
                    break
                if event.target.split(b"?", 1)[0] == self.page_path.encode():
                    await self._page(down, event)
                elif not await self._exchange(down, event):
                    break
                if not down.reusable():
                    clean = True
                    break
                down.conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._refuse(down, exc.error_status_hint, "bad_request", f"bad HTTP request: {exc}")
            clean = True
        except Closed:
            pass
        except asyncio.CancelledError:  # the proxy is closing: this task's end is the connection's
            clean = False
        except Exception as exc:  # a bug must cost one connection, never the proxy
            log.error("proxy connection failed: %s: %s", type(exc).__name__, exc)
        finally:
            self._clients.discard(down)
            self._tasks.discard(task)
            if clean:
                await down.close()
            else:
                down.abort()

    async def _page(self, down: H11Stream, request: h11.Request) -> None:
        while not isinstance(await down.next_event(), h11.EndOfMessage):
            pass
        if request.method not in (b"GET", b"HEAD"):
            await self._answer(down, 405, "method_not_allowed", "the metrics page answers GET only")
            return
        body = self.meters.page()
        head = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        down.write(h11.Response(status_code=200, headers=head))
        if request.method == b"GET":
            down.write(h11.Data(data=body))
        await down.send(h11.EndOfMessage())

    async def _exchange(self, down: H11Stream, request: h11.Request) -> bool:
        """Forward one request and its answer. False: the client connection cannot be used again."""
        t0 = time.monotonic_ns()
        meter = self.meters.begin(
            request.method.decode("ascii", "replace"), request.target.decode("ascii", "replace"), t0
        )
        address = self.upstream.address
        req = _Request(
            h11.Request(
                method=request.method,
                target=address.prefix.encode() + request.target,
                headers=hdr.request_headers(request.headers.raw_items(), address.authority),
            )
        )
        up = self.upstream.idle()
        reused = up is not None
        watched = isinstance(down.reader, ClientReader)
        gone: list[bool] = []
        try:
            if up is None:
                up = await self.upstream.connect()
            if down.conn.they_are_waiting_for_100_continue:
                await down.send(h11.InformationalResponse(status_code=100, headers=[]))
            try:
                await self._send(down, up, req, meter)
                answer, stall = await self._head(up)
            except UpstreamClosed:
                if not (reused and req.replayable):
                    raise
                up.abort()  # a kept-alive connection the server had closed: it never saw this request
                up = await self.upstream.connect()
                await self._send(down, up, req, meter)
                answer, stall = await self._head(up)
            req.kept = bytearray()
            if self._down_since is not None:
                log.info("proxy: upstream %s answers again", address)
                self._down_since = None
            if watched:
                assert isinstance(down.reader, ClientReader)
                down.reader.watch(lambda: self._gone(down, up, gone))
            down.write(  # sent with what comes next in the same read, or before the next read (`_stream`)
                h11.Response(
                    status_code=answer.status_code,
                    headers=hdr.response_headers(answer.headers.raw_items()),
                    reason=answer.reason,
                )
            )
            meter.response(time.monotonic_ns(), answer.status_code, answer.headers)
            await self._stream(down, up, meter, stall)
        except UpstreamError as exc:
            self._down(str(exc))
            await self._refuse(down, 502, f"upstream_{exc.kind}", str(exc), meter)
            meter.end(time.monotonic_ns(), exc.kind)
            return False
        except UpstreamClosed as exc:
            if gone:
                meter.end(time.monotonic_ns(), "cancelled")
                return False
            meter.end(time.monotonic_ns(), "closed")
            log.debug("upstream closed: %s", exc)
            await self._refuse(
                down, 502, "upstream_closed", f"{address} closed the connection before the answer was complete"
            )
            return False
        except asyncio.TimeoutError:
            meter.end(time.monotonic_ns(), "timeout")
            await self._refuse(down, 504, "upstream_timeout", f"{address} sent nothing for {self.timeout_s:g} s")
            return False
        except ClientGone:
            meter.end(time.monotonic_ns(), "cancelled")
            return False
        except h11.ProtocolError as exc:
            meter.end(time.monotonic_ns(), "bad_response")
            await self._refuse(down, 502, "upstream_bad_response", f"{address} answered bad HTTP: {exc}")
            return False
        finally:
            if watched:
                assert isinstance(down.reader, ClientReader)
                down.reader.watch(None)
            if up is not None:
                self.upstream.release(up)  # kept when the exchange ended cleanly, else dropped
        meter.end(time.monotonic_ns(), "ok")
        return True

    def _down(self, why: str) -> None:
        """One warning when the upstream stops answering (one info when it is back); each refusal is debug."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("proxy: %s; clients get 502 until it is back", why)
        else:
            log.debug("proxy: %s", why)

    async def _send(self, down: H11Stream, up: H11Stream, req: _Request, meter: Exchange) -> None:
        up.write(req.head)
        if req.kept:
            up.write(h11.Data(data=bytes(req.kept)))
        while not req.body_done:
            event = await down.next_event(flush=up)  # the head and each piece read go up before the next read
            if isinstance(event, h11.Data):
                up.write(event)  # the event read is sent as it is (h11 frames only its data)
                if req.replayable:
                    if len(req.kept) + len(event.data) <= REPLAY_BYTES:
                        req.kept += event.data
                    else:
                        req.replayable, req.kept = False, bytearray()
                meter.request_data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                req.body_done = True
        await up.send(h11.EndOfMessage())
        meter.sent()

    async def _head(self, up: H11Stream) -> tuple[h11.Response, _Stall]:
        """The answer's head, and the stall timer that keeps watching its body (a timer, not a task a request)."""
        stall = _Stall(up, self.timeout_s)
        try:
            while True:
                event = await up.next_event()
                stall.last_ns = time.monotonic_ns()
                if isinstance(event, h11.Response):
                    return event, stall
                if not isinstance(event, h11.InformationalResponse):  # 1xx (103 Early Hints) are not passed on
                    raise up.closed(f"unexpected {type(event).__name__} before the answer")
        except BaseException as exc:
            stall.cancel()
            if stall.fired and isinstance(exc, UpstreamClosed):
                raise asyncio.TimeoutError from None
            raise

    async def _stream(self, down: H11Stream, up: H11Stream, meter: Exchange, stall: _Stall) -> None:
        """The answer's body as it arrives: what one read brought is forwarded in one write (then measured), and
        drained before the next read (back-pressure)."""
        try:
            while True:
                event = await up.next_event(flush=down)
                stall.last_ns = now = time.monotonic_ns()
                if isinstance(event, h11.Data):
                    down.write(event)
                    meter.data(now, event.data)
                elif isinstance(event, h11.EndOfMessage):
                    await down.send(h11.EndOfMessage())
                    return
        except UpstreamClosed:
            if stall.fired:
                raise asyncio.TimeoutError from None
            raise
        finally:
            stall.cancel()

    @staticmethod
    def _gone(down: H11Stream, up: H11Stream, gone: list[bool]) -> None:
        """The client went away while its answer streamed: the upstream request is cancelled (its connection
        dropped) and the client's closed."""
        gone.append(True)
        up.abort()
        down.abort()

    async def _refuse(
        self, down: H11Stream, status: int, kind: str, message: str, meter: Exchange | None = None
    ) -> None:
        """An error answer when the client can still get one, then the rest of its body is read and dropped
        (the meter still sees its start: the model it named)."""
        if down.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):  # IDLE: a request h11 could not read
            return
        try:
            await self._answer(down, status, kind, message, close=True)
            if down.conn.their_state is h11.SEND_BODY:
                await asyncio.wait_for(self._discard(down, meter), DISCARD_S)
        except (Closed, asyncio.TimeoutError, h11.ProtocolError):
            pass

    @staticmethod
    async def _discard(down: H11Stream, meter: Exchange | None) -> None:
        while True:
            event = await down.next_event()
            if isinstance(event, h11.Data):
                if meter is not None:
                    meter.request_data(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return

    @staticmethod
    async def _answer(down: H11Stream, status: int, kind: str, message: str, close: bool = False) -> None:
        body = json.dumps({"error": {"message": message, "type": kind}}).encode() + b"\n"
        head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if close:
            head.append((b"connection", b"close"))
        down.write(h11.Response(status_code=status, headers=head))
        down.write(h11.Data(data=body))
        await down.send(h11.EndOfMessage())


class _Stall:
    """Drops the upstream connection when its answer stops for `timeout_s` (one timer per exchange,
    re-armed only when it fires, not per piece)."""

    def __init__(self, up: H11Stream, timeout_s: float):
        self.up = up
        self.timeout_s = timeout_s
        self.last_ns = time.monotonic_ns()
        self.fired = False
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(timeout_s, self._check)

    def _check(self) -> None:
        idle = (time.monotonic_ns() - self.last_ns) / 1e9
        if idle >= self.timeout_s:
            self.fired = True
            self.up.abort()
        else:
            self._handle = self._loop.call_later(self.timeout_s - idle, self._check)

    def cancel(self) -> None:
        self._handle.cancel()
