"""Against a real llama-server (tiny model, built by tests/support/llama_server.py): are the agent's tokens/s the
server's own, and what does watching cost while the model runs?

The agent runs as Telegraf runs it (`python -m telegraf_llm_input --config F --signal stdin`, one gather per
newline, line protocol on stdout), paced at one gather a second, while two clients keep both slots generating.
Right after each gather's output we read the server's own `/metrics`. Figures:
- the tokens the agent's `generation_tokens_per_s` add up to (rate x interval, summed over the gathers) vs the
  change of the server's own `llamacpp:tokens_predicted_total` over the same gathers: should be 1.00 (llama.cpp
  adds a request's tokens when it ends, so a request ending between the agent's scrape and ours shifts a few);
- the agent's CPU while the model runs vs the server's CPU over the same time (both from /proc via psutil).
Run: python3 -m bench.realserver
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml
from line_protocol_parser import parse_line

from bench.execd import execd_agent, trigger
from bench.report import record
from tests.support.llama_server import BuildUnavailable, LlamaServer, ensure_llama_server, tiny_model_path

GATHERS = 20
INTERVAL_S = 1.0
REQUEST_TOKENS = 64  # short requests: the server's counter moves in small steps


def keep_generating(server: LlamaServer, stop: threading.Event, client: int) -> None:
    i = 0
    while not stop.is_set():
        server.complete(f"Client {client}, request {i}: keep talking.", REQUEST_TOKENS, ignore_eos=True)
        i += 1


def gather(agent: subprocess.Popen[str], n: int) -> dict | None:
    """Trigger gather n; its llm_server point from the server's page (None when it had none). The server's log
    (a file: found since the agent reads a redirected output) gives a point of its own, without `up`."""
    points = [parse_line(line.rstrip("\n")) for line in trigger(agent, n) if line.startswith("llm_server")]
    page = [p for p in points if "up" in p["fields"]]
    return page[-1] if page else None


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def main() -> None:
    try:
        binary = ensure_llama_server()
    except BuildUnavailable as exc:
        print(f"real server: SKIPPED: {exc}")
        return
    rows: list[tuple[dict, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-llama-") as tmp:
        server = LlamaServer(binary, tiny_model_path(), Path(tmp)).start()
        stop = threading.Event()
        clients = [threading.Thread(target=keep_generating, args=(server, stop, c), daemon=True) for c in range(2)]
        config = Path(tmp) / "agent.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "targets": [{"url": server.url, "type": "llamacpp", "name": "tiny"}],
                    "host": {"enabled": False},
                    "gpu": {"enabled": False},
                }
            )
        )
        try:
            with execd_agent(config) as agent:
                for c in clients:
                    c.start()
                time.sleep(1.0)  # both slots busy before the first counted interval
                gather(agent, 1)  # warm-up: connections opened, first scrape has no rates
                agent_ps, server_ps = psutil.Process(agent.pid), psutil.Process(server.pid)
                cpu0 = (cpu_s(agent_ps), cpu_s(server_ps), time.monotonic())
                next_at = time.monotonic()
                for n in range(2, GATHERS + 2):
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    next_at += INTERVAL_S
                    point = gather(agent, n)
                    own = server.metrics()["tokens_predicted_total"]
                    if point is not None:
                        rows.append((point, own))
                cpu1 = (cpu_s(agent_ps), cpu_s(server_ps), time.monotonic())
        finally:
            stop.set()
            for c in clients:
                c.join(60)
            server.stop()
    pairs = [
        (p, q)
        for p, q in zip(rows, rows[1:])
        if "generation_tokens_per_s" in q[0]["fields"] and q[0]["fields"].get("up") == 1
    ]
    if len(pairs) < GATHERS // 2:
        raise SystemExit(f"too few rated gathers: {len(pairs)} of {GATHERS}")
    agent_tokens = sum(
        q["fields"]["generation_tokens_per_s"] * (q["time"] - p["time"]) / 1e9 for (p, _), (q, _) in pairs
    )
    server_tokens = pairs[-1][1][1] - pairs[0][0][1]
    span = (pairs[-1][1][0]["time"] - pairs[0][0][0]["time"]) / 1e9
    record(
        "real server",
        f"generated tokens over {len(pairs)} intervals ({span:.0f} s), from the agent's tokens/s",
        f"{agent_tokens:,.0f} ({agent_tokens / span:,.0f} tokens/s)",
        "llama-server's own tokens_predicted_total, read after each gather",
        f"{server_tokens:,.0f}",
        f"{agent_tokens / server_tokens:.3f} ({agent_tokens - server_tokens:+,.0f} tokens; a request is "
        f"{REQUEST_TOKENS})",
    )
    wall = cpu1[2] - cpu0[2]
    agent_cpu, server_cpu = (cpu1[0] - cpu0[0]) / wall, (cpu1[1] - cpu0[1]) / wall
    record(
        "real server",
        "agent CPU while the model runs (a gather a second; llm_server + llm_process)",
        f"{agent_cpu * 100:.2f}% of a core",
        "llama-server's CPU, same time",
        f"{server_cpu * 100:.0f}% of a core",
        f"{agent_cpu / server_cpu * 100:.2f}% of the server's",
    )


if __name__ == "__main__":
    main()
