"""Against a real llama-server (tiny model, built by tests/support/llama_server.py): are the agent's tokens/s the
server's own, and what does watching cost while the model runs?

The agent runs as a user runs it (`python -m telegraf_llm_input --config F --interval 1s`, line protocol on
stdout) while two clients keep both slots generating. Figures:
- the tokens the agent's `generation_tokens_per_s` add up to (rate x interval, summed) vs the change of the
  server's own `llamacpp:tokens_predicted_total` over the same gathers: should be 1.00;
- the agent's CPU while the model runs vs the server's CPU over the same time (both from /proc via psutil).
Run: python3 -m bench.realserver
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml
from line_protocol_parser import parse_line

from bench.report import record
from tests.support.llama_server import BuildUnavailable, LlamaServer, ensure_llama_server, tiny_model_path

REPO = Path(__file__).resolve().parent.parent
RUN_S = 20.0


def keep_generating(server: LlamaServer, stop: threading.Event, slot: int) -> None:
    i = 0
    while not stop.is_set():
        server.complete(f"Client {slot}, request {i}: keep talking.", 200, ignore_eos=True)
        i += 1


def main() -> None:
    try:
        binary = ensure_llama_server()
    except BuildUnavailable as exc:
        print(f"real server: SKIPPED: {exc}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-llama-") as tmp:
        server = LlamaServer(binary, tiny_model_path(), Path(tmp)).start()
        stop = threading.Event()
        clients = [threading.Thread(target=keep_generating, args=(server, stop, s), daemon=True) for s in range(2)]
        config = Path(tmp) / "agent.yaml"
        config.write_text(yaml.safe_dump({"targets": [{"url": server.url, "type": "llamacpp", "name": "tiny"}],
                                          "host": {"enabled": False}, "gpu": {"enabled": False}}))
        agent = subprocess.Popen([sys.executable, "-m", "telegraf_llm_input", "--config", str(config),
                                  "--interval", "1s"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True)
        points: list[dict] = []
        try:
            for c in clients:
                c.start()
            time.sleep(1.0)  # both slots busy before the first counted interval
            agent_ps, server_ps = psutil.Process(agent.pid), psutil.Process(server.pid)
            tokens0 = server.metrics()["tokens_predicted_total"]
            cpu0 = (sum(agent_ps.cpu_times()[:2]), sum(server_ps.cpu_times()[:2]), time.monotonic())
            reader = threading.Thread(target=read_points, args=(agent, points), daemon=True)
            reader.start()
            time.sleep(RUN_S)
            cpu1 = (sum(agent_ps.cpu_times()[:2]), sum(server_ps.cpu_times()[:2]), time.monotonic())
            tokens1 = server.metrics()["tokens_predicted_total"]
        finally:
            agent.terminate()
            agent.wait(10)
            stop.set()
            for c in clients:
                c.join(60)
            server.stop()
    rows = [p for p in points if p["measurement"] == "llm_server" and p["fields"].get("up") == 1]
    rated = [(p, q) for p, q in zip(rows, rows[1:]) if "generation_tokens_per_s" in q["fields"]]
    if len(rated) < 5:
        raise SystemExit(f"too few rated gathers: {len(rated)} of {len(rows)}")
    # Steady load: the agent's rates, averaged over its gathers, against the server's own counter read by us at
    # the start and end of the run (llama.cpp adds a request's tokens when it ends: a 20 s run evens that out).
    span = (rated[-1][1]["time"] - rated[0][0]["time"]) / 1e9
    agent_rate = sum(q["fields"]["generation_tokens_per_s"] * (q["time"] - p["time"]) / 1e9 for p, q in rated) / span
    server_rate = (tokens1 - tokens0) / (cpu1[2] - cpu0[2])
    record("real server", f"generation tokens/s over {len(rated)} gathers (1 s interval)", f"{agent_rate:,.0f} tokens/s",
           "llama-server's own tokens_predicted_total / time", f"{server_rate:,.0f} tokens/s",
           f"{agent_rate / server_rate:.3f} (1.000 = the same)")
    wall = cpu1[2] - cpu0[2]
    agent_cpu, server_cpu = (cpu1[0] - cpu0[0]) / wall, (cpu1[1] - cpu0[1]) / wall
    record("real server", "agent CPU while the model runs (1 s interval; llm_server + llm_process)", f"{agent_cpu * 100:.2f}% of a core",
           "llama-server's CPU, same time", f"{server_cpu * 100:.0f}% of a core",
           f"{agent_cpu / server_cpu * 100:.2f}% of the server's")


def read_points(agent: subprocess.Popen, points: list[dict]) -> None:
    assert agent.stdout is not None
    for line in agent.stdout:
        if line.startswith("llm_server"):
            points.append(parse_line(line.rstrip("\n")))


if __name__ == "__main__":
    main()
