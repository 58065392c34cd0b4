"""The server-log source against a real llama-server under load: its log, read from a file and from a journal.

Exact, not approximate: requests/s x interval sums to the requests the client sent, the generated-token means x
requests sum to the client's `usage` counts, prefill and time-per-token percentiles equal those computed here from
the same lines (the standard library's linear percentiles), and an agent restarted mid-load loses and repeats
nothing.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.sources import build_sources, logfind
from telegraf_llm_input.sources.base import SourceEnv
from telegraf_llm_input.sources.serverlog import ServerLogSource
from tests.support.journal import JournalFile

pytestmark = pytest.mark.realserver

PROMPTS = [f"Request number {i}: tell me about the weather in city {i}." for i in range(16)]
# independent of the source's own pattern: the three lines' numbers, by slot and task
LINE = re.compile(r"id +(\d+) \| task (\d+) \| +(prompt eval|eval|total) time = +([\d.]+) ms / +(\d+) tokens")


def log_path(server) -> Path:
    return server.workdir / f"llama-server-{server.port}.log"


def file_agent(server, state: Path) -> Agent:
    config = parse_config(
        {
            "agent": {"state_dir": str(state)},
            "targets": [
                {
                    "url": server.url,
                    "type": "llamacpp",
                    "name": "tiny",
                    "log": str(log_path(server)),
                    "process": {"enabled": False},
                }
            ],
            "host": {"enabled": False},
            "gpu": {"enabled": False},
        }
    )
    return Agent(build_sources(config, SourceEnv(state_dir=state)), [], deadline_s=5.0)


def log_points(metrics: list[Metric]) -> list[Metric]:
    return [m for m in metrics if m.measurement == "llm_server" and "up" not in m.fields]


async def load(server, n: int, concurrency: int = 3) -> list[int]:
    """n completions, `concurrency` at a time; the server's own `usage.completion_tokens` of each."""
    tokens: list[int] = []
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient() as client:

        async def one(i: int) -> None:
            async with sem:
                answer = await server.acomplete(client, PROMPTS[i % len(PROMPTS)], 1 + (i * 7) % 48)
                tokens.append(answer["usage"]["completion_tokens"])

        await asyncio.gather(*(one(i) for i in range(n)))
    return tokens


def timing_blocks(text: str) -> list[dict[str, tuple[float, int]]]:
    pending: dict[tuple[str, str], dict[str, tuple[float, int]]] = {}
    done = []
    for m in LINE.finditer(text):
        block = pending.setdefault((m[1], m[2]), {})
        block[m[3]] = (float(m[4]), int(m[5]))
        if m[3] == "total":
            done.append(pending.pop((m[1], m[2])))
    return done


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


@pytest.mark.parametrize("flags", [(), ("--log-prefix", "--log-timestamps")])
def test_one_interval_equals_the_lines(make_llama_server, tmp_path, flags):
    server = make_llama_server(extra=flags)
    agent = file_agent(server, tmp_path / "state")

    async def run():
        t0 = time.time_ns()
        assert log_points(await agent.gather_once(t0)) == []
        start = log_path(server).stat().st_size
        tokens = await load(server, 24)
        t1 = time.time_ns()
        [point] = log_points(await agent.gather_once(t1))
        await agent.close()
        return point, tokens, (t1 - t0) / 1e9, log_path(server).read_text()[start:]

    point, tokens, seconds, text = asyncio.run(run())
    if flags:
        assert re.search(r"^\d+\.\d\d\.\d{3}\.\d{3} I slot print_timing", text, re.M)
    f = point.fields
    assert round(f["requests_per_s"] * seconds) == len(tokens) == 24
    assert round(f["request_generation_tokens_mean"] * len(tokens)) == sum(tokens)
    blocks = timing_blocks(text)
    assert len(blocks) == 24
    prefill = [b["prompt eval"][0] for b in blocks]
    tpot = [b["eval"][0] / b["eval"][1] for b in blocks if b["eval"][1]]
    for p in (50, 90, 95, 99):
        assert f[f"prefill_p{p}_ms"] == pytest.approx(pct(prefill, p), rel=1e-12)
        assert f[f"tpot_p{p}_ms"] == pytest.approx(pct(tpot, p), rel=1e-12)
    assert f["request_prompt_tokens_p95"] == pytest.approx(pct([float(b["prompt eval"][1]) for b in blocks], 95))
    assert point.tags["target"] == "tiny" and point.tags["server_type"] == "llamacpp"


async def under_load(server, make_agent, n: int, restart_after: int, forward=None):
    """Gathers every 0.3 s while n requests run; the agent is replaced (closed, a new one from the same
    state_dir) after `restart_after` gathers. Returns the client's tokens and (seconds, point) per gather."""
    agent = make_agent()
    last = time.time_ns()
    assert log_points(await agent.gather_once(last)) == []
    task = asyncio.ensure_future(load(server, n))
    seen: list[tuple[float, Metric]] = []
    gathers = 0
    restarted_mid_load = False

    async def gather() -> None:
        nonlocal last
        now = time.time_ns()
        if forward is not None:
            await asyncio.to_thread(forward)
        [point] = log_points(await agent.gather_once(now))
        seen.append(((now - last) / 1e9, point))
        last = now

    while not task.done():
        await asyncio.sleep(0.2)
        await gather()
        gathers += 1
        if gathers == restart_after:
            restarted_mid_load = not task.done()
            await agent.close()
            await asyncio.sleep(0.5)  # requests finish while no agent runs
            agent = make_agent()
    tokens = await task
    await gather()
    await agent.close()
    assert restarted_mid_load, "the load ended before the restart: make it longer"
    return tokens, seen


def check_exact(tokens: list[int], seen: list[tuple[float, Metric]]) -> None:
    requests = sum(p.fields["requests_per_s"] * s for s, p in seen)
    assert round(requests) == len(tokens)
    generated = sum(p.fields.get("request_generation_tokens_mean", 0) * p.fields["requests_per_s"] * s for s, p in seen)
    assert round(generated) == sum(tokens)
    assert sum(1 for _, p in seen if p.fields["requests_per_s"] > 0) > 2  # spread over several intervals


def test_file_restart_mid_load(make_llama_server, tmp_path):
    server = make_llama_server()
    tokens, seen = asyncio.run(under_load(server, lambda: file_agent(server, tmp_path / "state"), 200, 2))
    check_exact(tokens, seen)


class Forwarder:
    """What journald does for a service: the server's stderr lines into the journal (a real journal file)."""

    def __init__(self, source: Path, journal: JournalFile):
        self.source, self.journal = source, journal
        self.offset = source.stat().st_size
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            data = self.source.read_bytes()[self.offset :]
            end = data.rfind(b"\n") + 1
            if end:
                self.journal.write(*data[:end].decode().splitlines())
                self.offset += end


def test_journal_restart_mid_load(make_llama_server, tmp_path):
    server = make_llama_server()
    journal = JournalFile(tmp_path / "journal" / "system.journal", unit="llama-server.service")
    journal.path.parent.mkdir()
    journal.write("llama-server starting")
    forward = Forwarder(log_path(server), journal)
    where = logfind.LogLocation("journal", unit="llama-server.service")
    target = TargetConfig(url=server.url, type="llamacpp", name="tiny")

    def make_agent() -> Agent:
        source = ServerLogSource(
            target,
            tmp_path / "state",
            locate=lambda t: logfind.Found(where, "llamacpp"),
            journal_files=[str(journal.path)],
        )
        return Agent([source], [], deadline_s=5.0)

    tokens, seen = asyncio.run(under_load(server, make_agent, 200, 2, forward))
    check_exact(tokens, seen)
