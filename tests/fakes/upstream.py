"""A plain HTTP/1.1 upstream for the proxy's fault tests: bodies of any size, slow streams, hangs.

Threads and blocking sockets with h11 framing (the oracle the scrape client is tested against), so a slow
reader on the other side blocks this server's `send` exactly as TCP back-pressure does. Paths:
- `POST /sink`: reads the body as it comes, answers `{"bytes": n, "sha256": hex}`.
- `GET /source?bytes=N`: N bytes in 64 KiB chunks; `sent` counts what the socket accepted so far.
- `POST /slow?chunks=N&every=S[&first=F]` (also `/api/generate`, so the proxy measures it): Ollama NDJSON lines
  every S seconds, the first F seconds after the head (default at once; `first_line_at`: when it was about to be
  sent); `closed_at` is when the client side went away, `slow_sent` how many lines it sent.
- `POST /hang`: reads the request, never answers.
Every accepted connection is counted (`connections`).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

import h11

CHUNK = 65536


L = TypeVar("L", bound="Listener")


class Listener:
    """A loopback server: a thread per accepted connection (`_serve`), counted (`connections`)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self: L) -> L:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class Upstream(Listener):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.slow_sent = 0
        self.closed_at: float | None = None
        self.first_line_at: float | None = None
        self.requests: list[tuple[str, str, list[tuple[bytes, bytes]]]] = []

    def _serve(self, conn: socket.socket) -> None:
        # heads up to Go's net/http default (Ollama's server), not h11's 16 KiB: a 40 KiB head split over two reads
        # made this fake hang up on the proxy (CI saw the 502)
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        try:
            while True:
                event = self._next(conn, h)
                if not isinstance(event, h11.Request):
                    return
                target = event.target.decode()
                self.requests.append((event.method.decode(), target, list(event.headers)))
                path, query = urlsplit(target).path, parse_qs(urlsplit(target).query)
                digest, n = hashlib.sha256(), 0
                while True:
                    body = self._next(conn, h)
                    if isinstance(body, h11.Data):
                        digest.update(body.data)
                        n += len(body.data)
                    else:
                        break
                if path == "/hang":
                    time.sleep(3600)
                elif path == "/sink":
                    self._json(conn, h, {"bytes": n, "sha256": digest.hexdigest()})
                elif path == "/source":
                    self._source(conn, h, int(query["bytes"][0]))
                elif path in ("/slow", "/api/generate"):
                    first = float(query.get("first", ["0"])[0])
                    self._slow(conn, h, int(query["chunks"][0]), float(query["every"][0]), first)
                    return
                else:
                    self._json(conn, h, {"error": "not found"}, 404)
                if h.our_state is not h11.DONE or h.their_state is not h11.DONE:
                    return
                h.start_next_cycle()
        except (OSError, h11.ProtocolError):
            pass
        finally:
            conn.close()

    @staticmethod
    def _next(conn: socket.socket, h: h11.Connection):
        while True:
            event = h.next_event()
            if event is not h11.NEED_DATA:
                return event
            h.receive_data(conn.recv(CHUNK))

    @staticmethod
    def _json(conn: socket.socket, h: h11.Connection, doc: dict, status: int = 200) -> None:
        body = json.dumps(doc).encode()
        head = [("content-type", "application/json"), ("content-length", str(len(body)))]
        conn.sendall(h.send(h11.Response(status_code=status, headers=head)) + h.send(h11.Data(data=body)))
        conn.sendall(h.send(h11.EndOfMessage()))

    def _source(self, conn: socket.socket, h: h11.Connection, total: int) -> None:
        conn.sendall(h.send(h11.Response(status_code=200, headers=[("content-length", str(total))])))
        piece = b"x" * CHUNK
        left = total
        while left:
            data = piece[: min(left, CHUNK)]
            conn.sendall(h.send(h11.Data(data=data)))
            self.sent += len(data)
            left -= len(data)
        conn.sendall(h.send(h11.EndOfMessage()))

    def _slow(self, conn: socket.socket, h: h11.Connection, chunks: int, every: float, first: float = 0.0) -> None:
        head = [("content-type", "application/x-ndjson")]
        conn.sendall(h.send(h11.Response(status_code=200, headers=head)))
        time.sleep(first)  # a model's prefill, the head already sent (as vLLM's server does)
        conn.settimeout(every)
        for i in range(chunks):
            line = json.dumps({"model": "m", "response": f" {i}", "done": False}) + "\n"
            if i == 0:
                self.first_line_at = time.monotonic()
            conn.sendall(h.send(h11.Data(data=line.encode())))
            self.slow_sent += 1
            try:  # wait for the next token time, noticing the other side going away meanwhile
                if conn.recv(1) == b"":
                    self.closed_at = time.monotonic()
                    return
            except TimeoutError:
                pass
            except OSError:
                self.closed_at = time.monotonic()
                return
        done = json.dumps({"model": "m", "response": "", "done": True, "eval_count": chunks}) + "\n"
        conn.sendall(h.send(h11.Data(data=done.encode())) + h.send(h11.EndOfMessage()))


class RawUpstream(Listener):
    """An upstream that answers each request with bytes as written (`answer`, or `answer(request)`): heads and
    framing no well-kept library would send. It closes after each answer unless `keep`; the raw requests it
    read are kept (`requests`)."""

    def __init__(self, answer: bytes | Callable[[bytes], bytes], keep: bool = False) -> None:
        super().__init__()
        self.answer = answer
        self.keep = keep
        self.requests: list[bytes] = []

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    got = b""
                    while b"\r\n\r\n" not in got:
                        data = conn.recv(CHUNK)
                        if not data:
                            return
                        got += data
                    self.requests.append(got)
                    conn.sendall(self.answer if isinstance(self.answer, bytes) else self.answer(got))
                    if not self.keep:
                        conn.shutdown(socket.SHUT_WR)
                        while conn.recv(CHUNK):  # until the proxy closes: its answer is never lost to a reset
                            pass
                        return
            except OSError:
                pass
