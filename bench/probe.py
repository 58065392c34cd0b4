"""How exact is the probe's TTFT while the agent is busy scraping other targets?

Runs the real agent loop with the real probe source against the scripted streaming server (TTFT
200 ms, then a token every 20 ms; in its own process, like a model server), twice in one run:
  idle:   the probe alone (the baseline);
  loaded: the probe plus 16 other targets (`type: prometheus`, the agent's own scrape path) whose pages
          (about 1,500 lines each, served with a delay by another process) are fetched and parsed on the
          agent's event loop every gather.
Prints the TTFT error against the script (median, p99) and the loaded/idle ratio. Target: <= 2 ms median.

    python3 bench/probe.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bench.report import record  # noqa: E402
from telegraf_llm_input.agent import Agent  # noqa: E402
from telegraf_llm_input.config import parse_config  # noqa: E402
from telegraf_llm_input.sources.base import SourceEnv  # noqa: E402
from telegraf_llm_input.sources.probe import ProbeSource  # noqa: E402
from telegraf_llm_input.sources.target import server_source  # noqa: E402

TTFT_S, INTERVAL_S, TOKENS = 0.2, 0.02, 6
OTHER_TARGETS = 16
GATHER_S = 0.5
PROBE_EVERY = "350ms"


def metrics_page(lines: int = 1500) -> bytes:
    out = []
    for i in range(lines // 3):
        out.append(f"# HELP vllm:metric_{i} A metric.\n# TYPE vllm:metric_{i} gauge\n")
        out.append(f'vllm:metric_{i}{{model_name="m",engine="0"}} {i * 1.5}\n')
    return "".join(out).encode()


def serve_metrics(n: int, delay_s: float) -> None:
    """Child process: n slow /metrics servers; prints their ports."""
    page = metrics_page()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            time.sleep(delay_s)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    ports = []
    for _ in range(n):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        srv.daemon_threads = True
        Thread(target=srv.serve_forever, daemon=True).start()
        ports.append(srv.server_address[1])
    print(" ".join(map(str, ports)), flush=True)
    sys.stdin.read()  # until the parent closes our stdin


def spawn(argv: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        cwd=ROOT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return proc, proc.stdout.readline().strip()


async def phase(stream_url: str, metric_urls: list[str], seconds: float) -> tuple[list[float], list[float]]:
    cfg = parse_config(
        {
            "targets": [
                {"url": stream_url, "probe": {"enabled": True, "every": PROBE_EVERY, "model": "fake-model"}},
                *({"url": u, "type": "prometheus", "process": {"enabled": False}} for u in metric_urls),
            ]
        }
    )
    probe = ProbeSource(cfg.targets[0])
    pool = SourceEnv().http_pool()
    sources = [probe, *(server_source(t, pool.retain()) for t in cfg.targets[1:])]
    agent = Agent(sources, [], deadline_s=GATHER_S * 0.8)
    ttft, tpot = [], []
    end = time.monotonic() + seconds
    next_tick = time.monotonic()
    while time.monotonic() < end:
        for m in await agent.gather_once():
            if m.measurement == "llm_probe" and m.fields.get("success") == 1:
                ttft.append(m.fields["ttft_ms"] - TTFT_S * 1000)
                tpot.append(m.fields["tpot_ms"] - INTERVAL_S * 1000)
        next_tick += GATHER_S
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    await agent.close()
    return ttft, tpot


async def floor(port: int, n: int = 20) -> list[float]:
    """The same request over a bare asyncio socket: what the fake server and loopback cost by themselves."""
    body = b'{"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
    req = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        writer.write(req)
        await writer.drain()
        buf, first = b"", None
        while not buf.endswith(b"0\r\n\r\n"):
            buf += await reader.read(65536)
            if first is None and b'"content": " 0"' in buf:
                first = time.perf_counter_ns()
        errors.append((first - t0) / 1e6 - TTFT_S * 1000)
    writer.close()
    return errors


def floor_for(port: int, seconds: float) -> list[float]:
    """Bare-socket requests, one after another, for `seconds` (run in its own process during a phase)."""

    async def run() -> list[float]:
        errors: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            errors.extend(await floor(port, 1))
            await asyncio.sleep(0.15)
        return errors

    return asyncio.run(run())


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--seconds", type=float, default=15.0, help="length of each phase (default 15)")
    opts = args.parse_args(argv)
    stream, port = spawn([sys.executable, "-m", "tests.fakes.streaming", str(TTFT_S), str(INTERVAL_S), str(TOKENS)])
    stream2, port2 = spawn([sys.executable, "-m", "tests.fakes.streaming", str(TTFT_S), str(INTERVAL_S), str(TOKENS)])
    metrics, ports = spawn([sys.executable, str(Path(__file__).resolve()), "--serve-metrics", str(OTHER_TARGETS)])
    try:
        stream_url = f"http://127.0.0.1:{port}"
        metric_urls = [f"http://127.0.0.1:{p}" for p in ports.split()]
        floor_errors = asyncio.run(floor(int(port)))
        results = {}
        loaded_floor: list[float] = []
        for name, urls in (("idle (probe alone)", []), (f"loaded (+{OTHER_TARGETS} targets scraped)", metric_urls)):
            # While loaded: the same bare-socket client in another process, against a second fake server,
            # shows what the machine itself adds (CPU scheduling on a busy box), apart from the agent.
            side = (
                subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "--floor", port2, str(opts.seconds)],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
                if urls
                else None
            )
            results[name] = asyncio.run(phase(stream_url, urls, opts.seconds))
            if side is not None:
                out, _ = side.communicate(timeout=opts.seconds + 30)
                loaded_floor = [float(x) for x in out.split()]
    finally:
        for proc in (stream, stream2, metrics):
            proc.stdin.close()
            proc.terminate()
            proc.wait(5)
    print(
        f"probe TTFT error vs script (scripted TTFT {TTFT_S * 1000:.0f} ms, token every {INTERVAL_S * 1000:.0f} ms; "
        f"gather every {GATHER_S}s, probe every {PROBE_EVERY})"
    )
    print(f"{'phase':38} {'probes':>6} {'ttft err median':>16} {'ttft err p99':>13} {'tpot err median':>16}")
    medians = []
    for name, (ttft, tpot) in results.items():
        if not ttft:
            print(f"{name:38} no successful probes")
            return 1
        medians.append(statistics.median(ttft))
        print(
            f"{name:38} {len(ttft):6d} {statistics.median(ttft):13.2f} ms {p99(ttft):10.2f} ms "
            f"{statistics.median(tpot):13.2f} ms"
        )
    print(
        f"{'floor (bare socket, no httpx/agent)':38} {len(floor_errors):6d} "
        f"{statistics.median(floor_errors):13.2f} ms {p99(floor_errors):10.2f} ms"
    )
    if loaded_floor:
        print(
            f"{'floor while loaded (other process)':38} {len(loaded_floor):6d} "
            f"{statistics.median(loaded_floor):13.2f} ms {p99(loaded_floor):10.2f} ms"
        )
    ratio = medians[1] / medians[0] if medians[0] > 0 else float("inf")
    print(
        f"loaded/idle median TTFT error ratio: {ratio:.2f}x; target <= 2 ms median: "
        f"{'met' if medians[1] <= 2.0 else 'NOT met'} ({medians[1]:.2f} ms)"
    )
    idle, loaded = results.values()
    record(
        "probe",
        "TTFT error median, probe alone -> with 16 targets scraped",
        f"{statistics.median(idle[0]):.2f} -> {statistics.median(loaded[0]):.2f} ms",
        "bare asyncio socket, same request, idle",
        f"{statistics.median(floor_errors):.2f} ms",
        f"loaded/idle {ratio:.2f}x",
    )
    if loaded_floor:
        record(
            "probe",
            f"TTFT error p99 with {OTHER_TARGETS} targets scraped ({len(loaded[0])} probes)",
            f"{p99(loaded[0]):.2f} ms",
            "bare socket client in another process, same load",
            f"{p99(loaded_floor):.2f} ms p99",
            f"{p99(loaded[0]) - p99(loaded_floor):+.2f} ms over the machine's own",
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-metrics":
        serve_metrics(int(sys.argv[2]), delay_s=0.05)
    elif len(sys.argv) == 4 and sys.argv[1] == "--floor":
        print(" ".join(f"{e:.3f}" for e in floor_for(int(sys.argv[2]), float(sys.argv[3]))))
    else:
        sys.exit(main())
