"""Scripted HTTP servers on 127.0.0.1 speaking a model server's wire format (reusable by any test).

`FakeServer(routes)`: each path answers a script of `Reply`s, one per request, the last one
repeating; `script(path, *replies)` replaces it. `api_key` makes the listed paths demand
`Authorization: Bearer <key>` (401 otherwise). Every request is recorded (path, headers).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    body: bytes | str | dict | list | Callable[[], bytes | str] = b""
    status: int = 200
    content_type: str | None = None
    delay: float = 0.0
    """Seconds to wait before answering (a server that hangs or blocks)."""
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float = 0.0
    """Seconds between body bytes: headers at once, then the body one byte at a time (a hung target)."""

    def render(self) -> tuple[bytes, str]:
        body = self.body() if callable(self.body) else self.body
        if isinstance(body, (dict, list)):
            return json.dumps(body).encode(), self.content_type or "application/json"
        if isinstance(body, str):
            return body.encode(), self.content_type or "text/plain; version=0.0.4; charset=utf-8"
        return body, self.content_type or "application/octet-stream"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""


class FakeServer:
    def __init__(
        self,
        routes: dict[str, Reply | Iterable[Reply]] | None = None,
        *,
        api_key: str | None = None,
        protected: Iterable[str] = (),
        port: int = 0,
    ):
        self._lock = threading.Lock()
        self._routes: dict[str, list[Reply]] = {}
        self.api_key = api_key
        self.protected = set(protected)
        self.requests: list[Request] = []
        for path, replies in (routes or {}).items():
            self.script(path, *([replies] if isinstance(replies, Reply) else replies))
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: avoid the 40 ms delayed-ACK stall

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                with fake._lock:
                    fake.requests.append(Request(self.command, path, dict(self.headers), body, query))
                    script = fake._routes.get(path)
                    reply = (script.pop(0) if len(script) > 1 else script[0]) if script else None
                if (
                    fake.api_key
                    and (path in fake.protected)
                    and self.headers.get("Authorization") != f"Bearer {fake.api_key}"
                ):
                    reply = Reply({"error": {"code": 401, "message": "Invalid API Key"}}, status=401)
                if reply is None:
                    reply = Reply("not found", status=404)
                if reply.delay:
                    time.sleep(reply.delay)
                data, ctype = reply.render()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    if reply.trickle:
                        self.wfile.flush()
                        for i in range(len(data)):
                            time.sleep(reply.trickle)
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                    else:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._routes[path] = list(replies)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
