"""One request forwarded: its body sent upstream as it arrives, the answer sent back as it arrives, and what
passes measured after it went on (the write first, and a read once the next has gone on, stamped with its own
time: measuring never delays a token, nor the client that a token wakes; courtesy.py). Only the answer's last read
waits, for the measuring of those before it, so that the next request finds the proxy free (`_measure`).

Both sides are callbacks (downstream.ClientConn, upstream.UpstreamConn), no task per request: what one read
brought goes on in one write. Back-pressure both ways: a client whose send buffer is full stops the upstream's
reads, an upstream that cannot take the body stops the client's (a few buffers per exchange whatever the body
size). A client that goes away drops the upstream connection at once (the model server stops generating).
Framing: a Content-Length body passes as it is; a chunked or close-delimited one is chunked again for an
HTTP/1.1 client (close-delimited for an HTTP/1.0 one). Faults the client can still be told about get a short
JSON error: 502 (upstream refused, unreachable, closed or bad before answering), 504 (no answer within
`timeout_s`); after the answer started, the client's connection is dropped (it never sees a complete-looking
answer).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from telegraf_llm_input.proxy import headers as hdr, wire
from telegraf_llm_input.proxy.downstream import ClientConn, error_body
from telegraf_llm_input.proxy.upstream import UpstreamConn, UpstreamError
from telegraf_llm_input.proxy.wire import DISCARD_S

if TYPE_CHECKING:
    from telegraf_llm_input.proxy.server import Proxy

REPLAY_BYTES = 1 << 20
"""Requests up to this size are kept until the answer starts, to resend them once on a fresh connection
when a kept-alive upstream connection turns out to be closed (the server never saw the request)."""
HELD_BYTES = 65536
"""Request bytes held while the upstream connection is being made before the client's reads stop."""


class Meter(Protocol):
    """What measures one forwarded request (proxy/measure.py); the exchange only reports what passes."""

    def request_data(self, data: bytes) -> None: ...
    def sent(self) -> None:
        """The whole request went upstream."""
        ...

    def response(self, t_ns: int, status: int, headers: hdr.Headers) -> None: ...
    def data(self, t_ns: int, data: bytes) -> None: ...
    def awaits_first_token(self) -> bool:
        """What passes now may be a model's first token (it is measured after the next read)."""
        ...

    def end(self, t_ns: int, outcome: str) -> None:
        """`outcome`: ok, cancelled (the client left), or an upstream fault: refused, timeout, closed, tls,
        unreachable, bad_response."""
        ...


class Stall:
    """One exchange waiting on its upstream: dropped when the answer stops for the watch's `timeout_s`."""

    __slots__ = ("up", "last_ns", "fired", "_watch")

    def __init__(self, watch: StallWatch, up: UpstreamConn):
        self.up = up
        self.last_ns = time.monotonic_ns()
        self.fired = False
        self._watch = watch
        watch.add(self)

    def cancel(self) -> None:
        self._watch.stalls.discard(self)


class StallWatch:
    """Every waiting exchange checked by one timer, a few times per `timeout_s`, while any waits.

    Not a timer per exchange: asyncio keeps a cancelled timer in its heap until it rebuilds the heap, a pass over
    every timer once cancelled ones are half of them (each hundredth request paid it: a p99 of its own)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float):
        self.loop = loop
        self.timeout_s = timeout_s
        self.every_s = min(1.0, timeout_s / 4)
        """How late past `timeout_s` a stall may be cut."""
        self.stalls: set[Stall] = set()
        self._armed = False

    def add(self, stall: Stall) -> None:
        self.stalls.add(stall)
        if not self._armed:
            self._armed = True
            self.loop.call_later(self.every_s, self._check)

    def _check(self) -> None:
        limit = time.monotonic_ns() - int(self.timeout_s * 1e9)
        for stall in [s for s in self.stalls if s.last_ns <= limit]:
            self.stalls.discard(stall)
            stall.fired = True
            stall.up.cut()
        self._armed = bool(self.stalls)
        if self._armed:
            self.loop.call_later(self.every_s, self._check)


class Forward:
    """A request to the upstream and its answer (the `Handler` of downstream.py, the `Receiver` of
    upstream.py)."""

    # what most exchanges never change: set on the instance only when they do
    _meter: Meter | None = None
    up: UpstreamConn | None = None
    reused = False
    retried = False
    connecting: asyncio.Task | None = None
    stall: Stall | None = None
    kept_bytes = 0
    request_done = False
    sent_reported = False
    answered = False
    """The answer's head went to the client: a fault can no longer be told, only cut."""
    rechunk = False
    framed = False
    """The answer's head says where it ends (else the connection's close is its end)."""
    response_done = False
    unmeasured = 0
    """Reads in `seen` from before the last flush: measured at the next one."""
    status = 0
    headers: hdr.Headers = ()
    finished = False
    refusing: str | None = None
    """The outcome of a fault told to the client, while the rest of its body is read and dropped."""

    def __init__(self, proxy: Proxy, client: ClientConn, request: wire.Request):
        self.proxy = proxy
        self.client = client
        self.request = request
        proxy.courtesy.exchanges += 1
        self.held: list[bytes] = []
        """Request bytes not yet written upstream (the connection is being made)."""
        self.kept: list[bytes] | None = []
        """Request bytes sent so far, for a resend (None: too many to keep)."""
        self.body_seen: list[bytes] = []
        self.close_after = not request.keep_alive
        self.out: list[bytes] = []
        self.seen: list[tuple[int, bytes]] = []
        self._send_up(self._head())
        up = proxy.upstream.idle()
        if up is None:
            self._connect()
        else:
            self.reused = True
            self._attach(up, flush=False)  # the client's read goes on in one write, after it is parsed

    @property
    def meter(self) -> Meter:
        """Begun once the request head went on (its cost never delays it)."""
        if self._meter is None:
            request = self.request
            method, target = request.method.decode("ascii", "replace"), request.target.decode("ascii", "replace")
            self._meter = self.proxy.meters.begin(method, target, request.t_ns)
        return self._meter

    def _head(self) -> bytes:
        request, upstream = self.request, self.proxy.upstream
        fields = hdr.request_headers(request.headers, upstream.authority, request.chunked, request.connection)
        return wire.request_head(request.method, upstream.prefix + request.target, fields)

    # the upstream connection
    def _connect(self) -> None:
        self.connecting = task = self.proxy.loop.create_task(self._connected())
        self.proxy.tasks.add(task)
        task.add_done_callback(self.proxy.tasks.discard)

    async def _connected(self) -> None:
        try:
            up = await self.proxy.upstream.connect()
        except UpstreamError as exc:
            self.connecting = None
            if not self.finished:
                self.proxy.down(str(exc))
                self._refuse(502, f"upstream_{exc.kind}", str(exc), exc.kind)
            return
        self.connecting = None
        if self.finished:
            up.abort()
            return
        self._attach(up)

    def _attach(self, up: UpstreamConn, flush: bool = True) -> None:
        self.up = up
        up.receiver = self
        up.no_body = self.request.method == b"HEAD"
        if not self.client.writable:
            up.pause_reading(True)
        if self.request.expect_continue and not self.retried:
            self.client.write(wire.CONTINUE)
        self.client.resume("connecting")
        if flush:
            self.client_flush()
        if self.request_done:
            self._start_stall()

    def _send_up(self, data: bytes) -> None:
        if self.kept is not None:
            self.kept_bytes += len(data)
            if self.kept_bytes <= REPLAY_BYTES:
                self.kept.append(data)
            else:
                self.kept = None
        self.held.append(data)
        if self.up is None and sum(map(len, self.held)) > HELD_BYTES:
            self.client.pause("connecting")

    def _start_stall(self) -> None:
        if self.stall is None and self.up is not None and not self.response_done:
            self.stall = Stall(self.proxy.stalls, self.up)

    # the client's side (downstream.Handler)
    def request_body(self, data: bytes) -> None:
        if self.refusing is None:
            self._send_up(wire.chunk(data) if self.request.chunked else data)
        self.body_seen.append(data)

    def request_end(self) -> None:
        self.request_done = True
        if self.refusing is not None:
            self._flush_body_seen()
            self._end(self.refusing)
            self.client.done(self, close=True)
            return
        if self.request.chunked:
            self._send_up(wire.LAST_CHUNK)

    def client_flush(self) -> None:
        up = self.up
        if up is not None and self.held:
            up.write(self.held[0] if len(self.held) == 1 else b"".join(self.held))
            self.held.clear()
            meter = self._meter  # begun after the yield: the upstream need not wait for it
            if self.request_done and not self.sent_reported and (meter is None or meter.awaits_first_token()):
                self.proxy.courtesy()  # the request is whole: the upstream may start on its answer
        self._flush_body_seen()
        if up is not None and self.request_done and not self.sent_reported and self.refusing is None:
            self.sent_reported = True
            self.meter.sent()
            self._start_stall()

    def _flush_body_seen(self) -> None:
        for data in self.body_seen:
            self.meter.request_data(data)
        self.body_seen.clear()

    def client_gone(self) -> None:
        if self.finished:
            return
        self._flush_body_seen()
        self._drop_upstream()
        self._end("cancelled" if self.refusing is None else self.refusing)

    def client_writable(self, ok: bool) -> None:
        if self.up is not None:
            self.up.pause_reading(not ok)

    # the upstream's side (upstream.Receiver)
    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], chunked: bool, sized: bool,
        connection: list[bytes],
    ) -> None:  # fmt: skip
        if self.finished:
            return
        self.answered = True
        self.kept = None
        self.proxy.back()
        self.status, self.headers, self.framed = status, headers, chunked or sized
        request = self.request
        fields = hdr.response_headers(headers, connection)
        body = not (request.method == b"HEAD" or status in wire.NO_BODY_STATUS)
        if body and (chunked or not sized):
            if request.http10:
                self.close_after = True  # the end of the body is the connection's
            else:
                self.rechunk = True
                fields.append((b"transfer-encoding", b"chunked"))
        if self.close_after:
            fields.append((b"connection", b"close"))
        self.out.append(wire.response_head(status, reason, fields))

    def response_body(self, data: bytes) -> None:
        if self.finished:
            return
        self.out.append(wire.chunk(data) if self.rechunk else data)
        self.seen.append((self.up.now if self.up is not None else time.monotonic_ns(), data))

    def response_end(self) -> None:
        if self.finished:
            return
        if self.rechunk:
            self.out.append(wire.LAST_CHUNK)
        self.response_done = True

    def upstream_flush(self) -> None:
        if self.finished:
            return
        now = self.up.now if self.up is not None else time.monotonic_ns()
        if self.stall is not None:
            self.stall.last_ns = now
        out = self.out
        if self.response_done and self.unmeasured:  # see _measure: the end waits for what went on before it
            self._measure(now, self.unmeasured)
            self.unmeasured = 0
        if out:
            self.client.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
            if len(self.seen) > self.unmeasured and self.meter.awaits_first_token():
                self.proxy.courtesy()  # body that may be the first token; later ones come at the model's pace
        if self.response_done:
            self._measure(now)
            self._complete()
        else:
            self._measure(now, self.unmeasured)
            self.unmeasured = len(self.seen)

    def _measure(self, now: int, reads: int | None = None, head: bool = False) -> None:
        """The reads written before the last one (`reads` of them; None: all), measured. What was just written
        waits for the next read or the end, so the proxy's wake that passes a token on ends at its write: the
        client, woken by that write, often runs on the core the proxy is on and would wait for its measuring.
        The reads' times are those they came at; a head alone waits likewise. The answer's last read is the one
        that goes on after the measuring of those before it (its own comes after): a client that sends its next
        request as soon as an answer ends (a batch, an eval) would find the proxy still measuring the last one,
        ~0.03 ms of that request's TTFT (`python -m bench proxy`); the end of an answer waits instead."""
        seen = self.seen
        n = len(seen) if reads is None else reads
        if self.status and (head or n or self.response_done):
            self.meter.response(now, self.status, self.headers)
            self.status = 0
        if n:
            for t_ns, data in seen[:n]:
                self.meter.data(t_ns, data)
            del seen[:n]

    def upstream_lost(self) -> None:
        if self.finished:
            return
        if self.answered and not self.framed:
            self.response_end()  # a close-delimited answer ends with its connection
            self.upstream_flush()
            return
        stalled = self.stall is not None and self.stall.fired
        if not self.answered and self.reused and not self.retried and self.kept is not None and not stalled:
            self._resend()  # a kept-alive connection the server had closed: it never saw this request
            return
        if stalled:
            self._fault(504, "upstream_timeout", f"{self.proxy.upstream.address} sent nothing for "
                        f"{self.proxy.timeout_s:g} s", "timeout")  # fmt: skip
        else:
            self._fault(502, "upstream_closed", f"{self.proxy.upstream.address} closed the connection before "
                        "the answer was complete", "closed")  # fmt: skip

    def upstream_bad(self, message: str) -> None:
        if self.finished:
            return
        address = self.proxy.upstream.address
        self._fault(502, "upstream_bad_response", f"{address} answered bad HTTP: {message}", "bad_response")

    def upstream_writable(self, ok: bool) -> None:
        if ok:
            self.client.resume("upstream")
        else:
            self.client.pause("upstream")

    # ends
    def _resend(self) -> None:
        self.retried = True
        self.up = None
        if self.stall is not None:
            self.stall.cancel()
            self.stall = None
        self.held = list(self.kept or [])
        self.client.resume("upstream")
        self._connect()

    def _fault(self, status: int, kind: str, message: str, outcome: str) -> None:
        """The upstream failed this exchange: the client told (before its answer began) or cut (after)."""
        self._drop_upstream()
        if self.answered:
            self.out.clear()
            self._measure(self.up.now if self.up is not None else time.monotonic_ns(), head=True)
            self._end(outcome)
            self.client.done(self, close=True)
            self.client.abort()
        else:
            self._refuse(status, kind, message, outcome)

    def _refuse(self, status: int, kind: str, message: str, outcome: str) -> None:
        """An error answer; the rest of the request's body is read and dropped (the meter still sees its start:
        the model it named), at most DISCARD_S."""
        self._drop_upstream()
        reason = {502: b"Bad Gateway", 504: b"Gateway Timeout"}.get(status, b"Error")
        head = [(b"content-type", b"application/json"), (b"connection", b"close")]
        self.client.write(wire.answer(status, reason, head, error_body(kind, message)))
        self.client.resume("connecting")
        self.client.resume("upstream")
        if self.request_done:
            self._flush_body_seen()
            self._end(outcome)
            self.client.done(self, close=True)
            return
        self.refusing = outcome
        self.held.clear()
        self.proxy.loop.call_later(DISCARD_S, self._discarded)

    def _discarded(self) -> None:
        if not self.finished:
            self._flush_body_seen()
            self._end(self.refusing or "closed")
            self.client.done(self, close=True)

    def _complete(self) -> None:
        """The whole answer went to the client."""
        self._end("ok")
        up, self.up = self.up, None
        if up is not None:
            if self.request_done:
                self.proxy.upstream.release(up)
            else:  # answered before the body was all sent: the connection is mid-request
                up.abort()
        self.client.done(self, close=self.close_after or not self.request_done)

    def _drop_upstream(self) -> None:
        if self.stall is not None:
            self.stall.cancel()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if self.up is not None:
            self.up.abort()

    def _end(self, outcome: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.proxy.courtesy.exchanges -= 1
        if self.stall is not None:
            self.stall.cancel()
        now = time.monotonic_ns()
        if self.seen:
            self._measure(now)
        self.meter.end(now, outcome)
