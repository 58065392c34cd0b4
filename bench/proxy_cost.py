"""Instructions the proxy spends per request and per streamed chunk (callgrind: load on the box does not move them).

The proxy command runs under `valgrind --tool=callgrind`; an upstream (bench/proxy.py's, its own process) and a
raw-HTTP client drive it. Two run lengths each, so start-up and imports cancel out:
  per request: (instructions for R2 one-token requests - for R1) / (R2 - R1), sequential, kept-alive;
  per chunk:   (instructions for a C2-token stream - a C1-token one) / (C2 - C1).

    python -m bench.proxy_cost [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy import Client  # noqa: E402
from tests.support.procs import free_port, http_ok, wait_until  # noqa: E402


async def _drive(port: int, requests: int, tokens: int) -> None:
    client = Client(port)
    for _ in range(requests):
        await client.ask(tokens, 0.0)
    client.close()


def instructions(up_port: int, requests: int, tokens: int, out: Path) -> int:
    """Instructions the proxy process ran, from start to SIGTERM, for `requests` requests of `tokens` tokens."""
    port = free_port()
    cg = out / f"proxy.{requests}x{tokens}.cg"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proxy = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}", sys.executable, "-m", "telegraf_llm_input",
         "proxy", "--upstream", f"http://127.0.0.1:{up_port}", "--listen", f"127.0.0.1:{port}"],
        env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(http_ok(f"http://127.0.0.1:{port}/proxy/metrics"), 120, "proxy", proxy)
        asyncio.run(_drive(port, requests, tokens))
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(120)
    text = cg.read_text(errors="replace")
    match = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(r"^totals:\s+(\d+)", text, re.M)
    assert match, f"no totals in {cg}"
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, help="keep the callgrind files here (callgrind_annotate them)")
    parser.add_argument("--requests", type=int, nargs=2, default=(100, 600))
    parser.add_argument("--tokens", type=int, nargs=2, default=(10, 2010))
    args = parser.parse_args()
    up_port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    upstream = subprocess.Popen([sys.executable, "-m", "bench.proxy", "--upstream-child", str(up_port)], env=env)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        try:
            wait_until(http_ok(f"http://127.0.0.1:{up_port}/?n=0"), 10, "upstream", upstream)
            r1, r2 = args.requests
            c1, c2 = args.tokens
            per_request = (instructions(up_port, r2, 1, out) - instructions(up_port, r1, 1, out)) / (r2 - r1)
            per_chunk = (instructions(up_port, 1, c2, out) - instructions(up_port, 1, c1, out)) / (c2 - c1)
        finally:
            upstream.terminate()
            upstream.wait(10)
    print(f"proxy instructions per request (one-token stream, kept-alive): {per_request:,.0f}")
    print(f"proxy instructions per streamed chunk:                          {per_chunk:,.0f}")


if __name__ == "__main__":
    main()
