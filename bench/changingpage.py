"""The vLLM page with values that change every second, on N loopback ports, in its own process (bench.vs_go).

`python -m bench.changingpage N [--distinct]` prints the N ports on one line once listening; every port answers
`/metrics`
(tests/fixtures/prometheus/vllm.txt, its `vllm:` samples moved on each second: counters, histogram buckets and
counts grow by the same step, so the page stays a valid one; gauges wander) and `/version`, and `/_scrapes` says
how many `/metrics` answers all ports gave so far (how many scrapes a scraper made: its CPU is divided by that).
The page of a second is built once and served to every port; with `--distinct`, each port serves its own model's
page (the model renamed per port), as N different servers would.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGE = (Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "prometheus" / "vllm.txt").read_text()
SAMPLE = re.compile(r"^(vllm:\S+(?:\{[^}]*\})?) (\S+)$", re.M)
PROM = "text/plain; version=0.0.4; charset=utf-8"


def template(page: str) -> tuple[list[str], list[tuple[float, float]]]:
    """The page cut around each changing value: text parts, and (base, step per second) for each value."""
    parts: list[str] = []
    values: list[tuple[float, float]] = []
    last = 0
    for m in SAMPLE.finditer(page):
        name, value = m.group(1), float(m.group(2))
        parts.append(page[last : m.start(2)])
        last = m.end(2)
        metric = name.split("{", 1)[0]
        if metric.endswith(("_total", "_bucket", "_count")):
            values.append((value, 3.0))
        elif metric.endswith("_sum"):
            values.append((value, 0.75))
        else:
            values.append((value, -1.0))  # a gauge: wanders around its value
    parts.append(page[last:])
    return parts, values


MODEL = 'model_name="Qwen/Qwen2.5-7B-Instruct"'


def page_of(port_index: int | None) -> str:
    """The page; with a port index, its model renamed for that port (servers that share no series)."""
    if port_index is None:
        return PAGE
    return PAGE.replace(MODEL, MODEL[:-1] + f'-{port_index}"')


class Counter:
    """`/metrics` answers of every port."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scrapes = 0


class Pages:
    """The page of the current second, built once."""

    def __init__(self, counter: Counter, page: str = PAGE) -> None:
        self._parts, self._values = template(page)
        self._start = time.monotonic()
        self._second = -1
        self._body = b""
        self._lock = counter.lock
        self._counter = counter

    def body(self) -> bytes:
        second = int(time.monotonic() - self._start)
        with self._lock:
            self._counter.scrapes += 1
            if second != self._second:
                self._second = second
                self._body = self._build(second).encode()
            return self._body

    def _build(self, k: int) -> str:
        out = []
        for part, (base, step) in zip(self._parts, self._values):
            out.append(part)
            value = base + step * k if step >= 0 else base + (k % 7) * 0.5
            out.append(repr(float(value)))
        out.append(self._parts[-1])
        return "".join(out)


def serve(n: int, distinct: bool = False) -> None:
    """`distinct`: each port serves its own model's page (no two targets share a series), else the same page."""
    counter = Counter()
    shared = Pages(counter)
    by_port: dict[int, Pages] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            if path == "/metrics":
                ctype, body = PROM, by_port.get(self.server.server_address[1], shared).body()
            elif path == "/version":
                ctype, body = "application/json", b'{"version": "0.9.1"}'
            elif path == "/_scrapes":
                ctype, body = "text/plain", str(counter.scrapes).encode()
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(n)]
    if distinct:
        by_port.update({s.server_address[1]: Pages(counter, page_of(i)) for i, s in enumerate(servers)})
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(" ".join(str(s.server_address[1]) for s in servers), flush=True)
    sys.stdin.read()  # until the bench closes our stdin


def scrapes(port: int) -> int:
    """How many `/metrics` answers the server on `port` (any of its ports) gave so far."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /_scrapes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return int(data.rsplit(b"\r\n\r\n", 1)[1])


if __name__ == "__main__":
    serve(int(sys.argv[1]), "--distinct" in sys.argv[2:])
