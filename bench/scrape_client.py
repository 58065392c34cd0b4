"""Scrape client: CPU per GET of ours (`http.get` over `http11.Client`) vs httpx's AsyncClient, the same requests.

The decision this records (docs/performance.md): a gather makes a few small GETs per target, and httpx's layers
(client, httpcore pool, anyio streams, h11) cost several times the socket work itself. Both clients keep one
connection alive and ask the same page server (another process, so only this process's CPU counts) in turns,
one request of each per round, so a machine that changes speed during the run moves both alike. httpx is set up
as the agent set it up before (no redirects, no proxies from the environment, its pool limits).
Run: python3 -m bench.scrape_client
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx

from bench.pages import llamacpp_pages, vllm_pages
from bench.pageserver import PageServer
from bench.report import record
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import HttpPool, get

ROUNDS = 1500


async def per_request(url: str, path: str) -> tuple[float, float, int]:
    """(our CPU per GET, httpx's, body bytes), medians over ROUNDS."""
    target = TargetConfig(url=url, name="bench")
    pool = HttpPool()
    client = httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=8, max_keepalive_connections=8, keepalive_expiry=60),
    )
    ours, theirs = [], []
    size = 0
    try:
        for i in range(ROUNDS + 50):
            t0 = time.process_time()
            size = len((await get(pool, target, path)).body)
            t1 = time.process_time()
            async with client.stream("GET", url + path, timeout=5.0) as resp:
                await resp.aread()
            t2 = time.process_time()
            if i >= 50:  # connections open, caches warm
                ours.append(t1 - t0)
                theirs.append(t2 - t1)
    finally:
        await pool.close()
        await client.aclose()
    return statistics.median(ours), statistics.median(theirs), size


def main() -> None:
    for name, pages, path in (("llama.cpp", llamacpp_pages(), "/health"), ("vLLM", vllm_pages(), "/metrics")):
        with PageServer(pages) as server:
            ours, theirs, size = asyncio.run(per_request(server.url, path))
        record(
            "scrape client",
            f"CPU per GET of {name} {path} ({size:,} bytes), connection kept",
            f"{ours * 1e6:.0f} us",
            "httpx.AsyncClient, same requests",
            f"{theirs * 1e6:.0f} us",
            f"{theirs / ours:.1f}x less CPU",
        )


if __name__ == "__main__":
    main()
