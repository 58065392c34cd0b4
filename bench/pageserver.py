"""A static HTTP/1.1 page server in its own process, for benches that must not count its CPU as the agent's.

`python -m bench.pageserver MANIFEST.json` where the manifest is
`{"port": 0, "delay_s": 0.0, "pages": {"/metrics": ["text/plain; version=0.0.4", "<body>"], ...}}`;
it prints its port on stdout once listening. `delay_s` holds every answer back (slow targets).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(manifest: dict) -> None:
    pages = {path: (ctype, body.encode()) for path, (ctype, body) in manifest["pages"].items()}
    delay = float(manifest.get("delay_s", 0.0))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall between

        def do_GET(self) -> None:  # noqa: N802
            if delay:
                time.sleep(delay)
            page = pages.get(self.path.split("?")[0])
            if page is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", page[0])
            self.send_header("Content-Length", str(len(page[1])))
            self.end_headers()
            self.wfile.write(page[1])

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", int(manifest.get("port", 0))), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


class PageServer:
    """Start with the pages; `.url`; `.stop()`."""

    def __init__(self, pages: dict[str, tuple[str, str]], delay_s: float = 0.0):
        self._dir = tempfile.TemporaryDirectory(prefix="bench-pages-")
        manifest = Path(self._dir.name) / "manifest.json"
        manifest.write_text(json.dumps({"pages": pages, "delay_s": delay_s}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.pageserver", str(manifest)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._dir.cleanup()

    def __enter__(self) -> PageServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    serve(json.loads(Path(sys.argv[1]).read_text()))
