"""Side by side with the Go scrapers a user would run instead: CPU per scrape and RSS of the agent, vmagent
(remote-writing to a VictoriaMetrics) and Prometheus (its own TSDB), on 1 and 16 targets, and the agent's idle cost.

Every target serves the same vLLM page whose values change each second (bench.changingpage, in its own process);
each scraper runs alone, at a 1 s interval, for a fixed window after a warm-up. CPU is the scraper process's own
(every thread's time on a CPU, /proc/PID/task/*/schedstat, nanoseconds; not wall time: the machine is shared),
divided by the `/metrics` answers the page server gave in the window. RSS is /proc/PID/status VmRSS at the
window's end. vmagent and Prometheus come from the Debian packages (`victoria-metrics`, `prometheus`); a missing
one is skipped with one line. The agent writes to stdout, a pipe another process reads, as under Telegraf; host, GPU and process
sources are off for it, as the Go scrapers have none. Idle: no target, host/GPU/discovery off, 1 s interval,
CPU per second of wall time. The agent (and the bare loop beside it) runs as a user runs it: this checkout
`pip install`ed into a fresh venv built once per run (bench.installed), not the editable dev venv.
The RSS over 10,000 gathers (flat or not) takes minutes: `--gathers 10000` (BENCH_VS_GO_GATHERS) asks for it.
`--distinct` gives each target its own model's page instead (16 different servers: no series, shape or plan shared).
Run: python3 -m bench.vs_go [--seconds S] [--targets 1,16] [--gathers N] [--distinct]  (BENCH_VS_GO_SECONDS; 10 s)
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.changingpage import scrapes
from bench.execd import execd_agent, start, trigger
from bench.installed import installed_python
from bench.report import record

REPO = Path(__file__).resolve().parent.parent
WARMUP_S = 4.0


def cpu_ns(pid: int) -> int:
    """On-CPU nanoseconds of every live thread of `pid` (schedstat: exact, unlike the 10 ms ticks of /proc/stat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that just ended
            pass
    return total


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s")


@dataclass
class Figures:
    cpu_ms_per_scrape: float
    rss: int
    scrapes: int
    window_s: float


class PageServers:
    """`n` changing vLLM pages on loopback ports, served by another process."""

    def __init__(self, n: int, distinct: bool = False):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.changingpage", str(n), *(["--distinct"] if distinct else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        self.ports = [int(p) for p in self.proc.stdout.readline().split()]

    def scrapes(self) -> int:
        return scrapes(self.ports[0])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


Starter = Callable[[list[int], Path], list[subprocess.Popen]]
"""Starts a scraper of these ports in this directory; its processes, the measured one first."""


def agent_config(ports: list[int], tmp: Path) -> Path:
    """The agent's config: a `type: vllm` target per port; no host, GPU, process or discovery source."""
    config = tmp / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "agent": {"interval": "1s"},
                "targets": [
                    {"url": f"http://127.0.0.1:{p}", "type": "vllm", "name": f"t{p}", "process": {"enabled": False}}
                    for p in ports
                ],
                "host": {"enabled": False},
                "gpu": {"enabled": False},
                "discovery": {"enabled": False},
            }
        )
    )
    return config


def agent_starter(python: str) -> Starter:
    """Starts the agent of `python` (bench.installed) writing into a pipe another process drains, as under Telegraf."""

    def start_agent(ports: list[int], tmp: Path) -> list[subprocess.Popen]:
        config = agent_config(ports, tmp)
        reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)  # Telegraf's part
        agent = start(config, "none", subprocess.DEVNULL, reader.stdin, python)
        assert reader.stdin is not None
        reader.stdin.close()
        return [agent, reader]

    return start_agent


def _scrape_config(ports: list[int]) -> dict:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "800ms"},
        "scrape_configs": [{"job_name": "vllm", "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}],
    }


def start_vmagent(ports: list[int], tmp: Path) -> list[subprocess.Popen]:
    (tmp / "scrape.yml").write_text(yaml.safe_dump(_scrape_config(ports)))
    vm_port = free_port()
    vm = subprocess.Popen(
        [
            "victoria-metrics",
            f"-storageDataPath={tmp / 'vm'}",
            f"-httpListenAddr=127.0.0.1:{vm_port}",
            "-retentionPeriod=1d",
            "-loggerLevel=ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(vm_port)
    agent = subprocess.Popen(
        [
            "vmagent",
            f"-promscrape.config={tmp / 'scrape.yml'}",
            f"-remoteWrite.url=http://127.0.0.1:{vm_port}/api/v1/write",
            f"-remoteWrite.tmpDataPath={tmp / 'vmagent'}",
            f"-httpListenAddr=127.0.0.1:{free_port()}",
            "-loggerLevel=ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return [agent, vm]


def start_prometheus(ports: list[int], tmp: Path) -> list[subprocess.Popen]:
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(_scrape_config(ports)))
    return [
        subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'prom'}",
                f"--web.listen-address=127.0.0.1:{free_port()}",
                "--log.level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]


IDLE_LOOP = "import asyncio\nasync def main():\n    while True:\n        await asyncio.sleep(1)\nasyncio.run(main())"
CALL_AT_LOOP = (
    "import asyncio\nloop = asyncio.new_event_loop()\nat = [loop.time()]\ndef tick():\n    at[0] += 1\n"
    "    loop.call_at(at[0], tick)\ntick()\nloop.run_forever()"
)
"""The floor under the agent's idle interval: a timer callback re-armed once a second, no task resumed (what the
agent's clock is: `Trigger.every`)."""


def idle_loop_starter(python: str, code: str = IDLE_LOOP) -> Starter:
    """The idle figure's baselines: an asyncio loop of the agent's interpreter that wakes once a second and does
    nothing (`code`: a task awaiting `asyncio.sleep(1)`, or a bare `call_at` callback)."""

    def start_idle_loop(ports: list[int], tmp: Path) -> list[subprocess.Popen]:
        return [subprocess.Popen([python, "-c", code], cwd=tmp)]

    return start_idle_loop


def rss_over_gathers(ports: list[int], gathers: int, python: str) -> dict[int, int]:
    """The agent under execd (`--signal stdin`), gathers triggered back to back: RSS after 200, half and all."""
    checkpoints = sorted({200, gathers // 2, gathers})
    rss: dict[int, int] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-vs-go-") as tmp,
        execd_agent(agent_config(ports, Path(tmp)), python) as agent,
    ):
        done = 0
        for checkpoint in checkpoints:
            while done < checkpoint:
                done += 1
                trigger(agent, done)
            rss[done] = rss_bytes(agent.pid)
    return rss


def measure(start: Starter, pages: PageServers | None, ports: list[int], window_s: float) -> Figures:
    """Start, warm up, then CPU and scrapes over the window; RSS at its end."""
    with tempfile.TemporaryDirectory(prefix="bench-vs-go-") as tmp:
        procs = start(ports, Path(tmp))
        pid = procs[0].pid
        try:
            time.sleep(WARMUP_S)
            if procs[0].poll() is not None:
                raise RuntimeError(f"{procs[0].args[0]} exited with {procs[0].returncode}")
            n0, c0, t0 = (pages.scrapes() if pages else 0), cpu_ns(pid), time.monotonic()
            time.sleep(window_s)
            n1, c1, t1 = (pages.scrapes() if pages else 0), cpu_ns(pid), time.monotonic()
            rss = rss_bytes(pid)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    n = n1 - n0
    per = (c1 - c0) / 1e6 / n if n else (c1 - c0) / 1e6 / (t1 - t0)  # no pages: ms per second of wall time
    return Figures(per, rss, n, t1 - t0)


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vs_go", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_VS_GO_SECONDS", "10")))
    parser.add_argument("--targets", default="1,16", help="target counts, comma-separated (default 1,16)")
    parser.add_argument("--only", default="ours,vmagent,prometheus", help="scrapers, comma-separated")
    parser.add_argument(
        "--gathers",
        type=int,
        default=int(os.environ.get("BENCH_VS_GO_GATHERS", "0")),
        help="also: our RSS over this many back-to-back gathers of 16 targets (e.g. 10000: minutes; default: off)",
    )
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="each target serves its own model's page (no series shared between targets), not the same page",
    )
    args = parser.parse_args(argv)
    with installed_python() as python:
        compare(args, python)


def compare(args: argparse.Namespace, python: str) -> None:
    """Every figure, the agent run by `python` (bench.installed)."""
    only = set(args.only.split(","))
    start_agent = agent_starter(python)
    scrapers: dict[str, tuple[Starter, str]] = {"ours": (start_agent, "telegraf-llm-input (stdout)")}
    if shutil.which("vmagent") and shutil.which("victoria-metrics"):
        scrapers["vmagent"] = (start_vmagent, "vmagent (remote write to VictoriaMetrics)")
    else:
        print("vs_go: vmagent skipped: no vmagent/victoria-metrics on PATH (Debian package victoria-metrics)")
    if shutil.which("prometheus"):
        scrapers["prometheus"] = (start_prometheus, "prometheus (own TSDB)")
    else:
        print("vs_go: prometheus skipped: no prometheus on PATH (Debian package prometheus)")
    scrapers = {k: v for k, v in scrapers.items() if k in only}
    kind = "different" if args.distinct else "changing"
    for n in [int(x) for x in args.targets.split(",") if x]:
        pages = PageServers(n, args.distinct)
        try:
            figures = {name: measure(start, pages, pages.ports, args.seconds) for name, (start, _) in scrapers.items()}
        finally:
            pages.close()
        for name, f in figures.items():
            print(
                f"vs_go: {n:>2} target(s) {name:<10} {f.cpu_ms_per_scrape:6.3f} ms CPU/scrape  RSS {mib(f.rss):>9}"
                f"  ({f.scrapes} scrapes in {f.window_s:.1f} s)",
                flush=True,
            )
        ours = figures.get("ours")
        if ours is None:
            continue
        for name, (_, label) in scrapers.items():
            if name == "ours":
                continue
            go = figures[name]
            record(
                "vs Go scrapers",
                f"CPU per scrape, {n} {kind} vLLM page(s) at 1 s ({ours.scrapes} scrapes in {ours.window_s:.0f} s)",
                f"{ours.cpu_ms_per_scrape:.2f} ms",
                label,
                f"{go.cpu_ms_per_scrape:.2f} ms",
                f"{ours.cpu_ms_per_scrape / go.cpu_ms_per_scrape:.2f}x theirs",
            )
            record(
                "vs Go scrapers",
                f"RSS scraping {n} target(s)" + (", each its own model's page" if args.distinct else ""),
                mib(ours.rss),
                label,
                mib(go.rss),
                f"{ours.rss / go.rss:.2f}x theirs",
            )
    if "ours" in scrapers and args.gathers:
        pages = PageServers(16)
        try:
            started = time.monotonic()
            rss = rss_over_gathers(pages.ports, args.gathers, python)
            took = time.monotonic() - started
        finally:
            pages.close()
        half, end = args.gathers // 2, args.gathers
        record(
            "vs Go scrapers",
            f"RSS over {end:,} execd gathers of 16 targets ({end / took:.1f} gathers/s): after {end:,}; growth "
            f"{half:,} to {end:,}",
            f"{mib(rss[end])}; {(rss[end] - rss[half]) / 2**10:+,.0f} KiB",
            "the same agent after 200 gathers (warm); growth 200 to half",
            f"{mib(rss[200])}; {(rss[half] - rss[200]) / 2**10:+,.0f} KiB",
            "flat second half = no leak",
        )
    if "ours" in scrapers:
        idle = measure(start_agent, None, [], args.seconds)
        floor = measure(idle_loop_starter(python), None, [], args.seconds)
        record(
            "vs Go scrapers",
            "idle: no target, host/GPU/discovery off, 1 s interval (goal, issue 28: <= 0.3 ms CPU/s)",
            f"{idle.cpu_ms_per_scrape:.3f} ms CPU/s, RSS {mib(idle.rss)}",
            "a bare asyncio loop waking once a second, doing nothing",
            f"{floor.cpu_ms_per_scrape:.3f} ms CPU/s, RSS {mib(floor.rss)}",
            f"+{idle.cpu_ms_per_scrape - floor.cpu_ms_per_scrape:.3f} ms CPU/s over the bare loop",
        )
        timer = measure(idle_loop_starter(python, CALL_AT_LOOP), None, [], args.seconds)
        record(
            "vs Go scrapers",
            "idle: the same agent",
            f"{idle.cpu_ms_per_scrape:.3f} ms CPU/s",
            "a bare loop.call_at callback re-armed once a second (no task resumed: the agent's clock)",
            f"{timer.cpu_ms_per_scrape:.3f} ms CPU/s, RSS {mib(timer.rss)}",
            f"+{idle.cpu_ms_per_scrape - timer.cpu_ms_per_scrape:.3f} ms CPU/s over the call_at loop",
        )


if __name__ == "__main__":
    main(sys.argv[1:])
