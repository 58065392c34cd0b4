"""The line protocol the agent writes for fixed inputs, byte for byte, against a recorded golden file.

Why: a refactor (module moves, new seams) must not change what a user's database receives. The agent
is built from a Config the public way (`build_sources`, `build_processors`) and gathers three times at
fixed timestamps against a fake server of every type, the fake NVML box and a request log; every line
the stdout sink writes is compared with tests/fixtures/golden/lines.txt.

Volatile values (the one documented rule, `stable`): a field measured from the wall or monotonic clock
or from this machine is removed before comparing: `llm_server.scrape_ms`; every `llm_agent` field
measuring time (`gather_ms`, `duration_ms`); `llm_requests` `*_per_s` (divided by the monotonic
seconds between gathers); `llm_model_loaded.seconds_until_unload` (Ollama's expiry minus the wall
clock). Host and process sources are off (they read this machine). Everything else
-- measurement, tag set and order, field names, order, values and wire types, timestamps -- must match.

Regenerate (only when output is meant to change, e.g. a new schema field):
`GOLDEN_UPDATE=1 .venv/bin/python -m pytest tests/test_golden_lines.py`.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
from pathlib import Path

import pytest

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.processors import build_processors
from telegraf_llm_input.sinks.stdout import StdoutSink
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv
from tests.fakes.life import KINDS, T0, S
from tests.fakes.nvml import FakeNvml
from tests.fakes.server import FakeServer

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "lines.txt"
SCALES = (1.0, 2.5, 3.0)
"""Every counter's scale at each gather (tests/fakes/life.py): rates and percentiles from the second on."""

VOLATILE = {
    "llm_server": re.compile(r"scrape_ms"),
    "llm_agent": re.compile(r"gather_ms|duration_ms"),
    "llm_requests": re.compile(r".*_per_s"),
    "llm_model_loaded": re.compile(r"seconds_until_unload"),
}


def stable(line: str) -> str:
    """The line without its volatile fields (see the module docstring); fields are `k=v` split on commas
    outside quotes (no string field of these lines holds a comma)."""
    head, fields, ts = line.rsplit(" ", 2)
    measurement = head.split(",", 1)[0]
    rule = VOLATILE.get(measurement)
    if rule is None:
        return line
    kept = [f for f in fields.split(",") if not rule.fullmatch(f.split("=", 1)[0])]
    return f"{head} {','.join(kept)} {ts}"


def record(tmp: Path) -> list[str]:
    log = tmp / "requests.jsonl"
    log.write_text("")
    servers = {kind.type: FakeServer({}).start() for kind in KINDS}
    targets = []
    for kind in KINDS:
        target = kind.target(servers[kind.type].url)
        if kind.type == "vllm":
            target["gpus"] = [0, 1]
        targets.append(target)
    config = parse_config(
        {
            "targets": targets,
            "host": {"enabled": False},
            "gpu": {"backends": ["nvidia"], "nvidia_smi_compat": True},
            "logs": [{"path": str(log), "from": "beginning", "group_by": ["model"], "name": "requests"}],
        }
    )
    env = SourceEnv()
    out = io.BytesIO()
    agent = Agent(
        build_sources(config, env),
        [StdoutSink(out)],
        deadline_s=5.0,
        processors=build_processors(config),
        global_tags={"host": "golden"},
    )

    async def run():
        for i, k in enumerate(SCALES):
            for kind in KINDS:
                for path, reply in kind.routes(k).items():
                    servers[kind.type].script(path, reply)
            with log.open("a") as f:
                for j in range(3 + i):
                    f.write(
                        json.dumps(
                            {
                                "duration_ms": 100.5 + 10 * j,
                                "ttft_ms": 20 + j,
                                "prompt_tokens": 10 + j,
                                "completion_tokens": 40 * (i + 1),
                                "status": "success" if j else "error",
                                "model": "qwen" if j % 2 else "llama",
                            }
                        )
                        + "\n"
                    )
            await agent.gather_once(T0 + i * 10 * S)
        await agent.close()

    try:
        asyncio.run(run())
    finally:
        for server in servers.values():
            server.stop()
    return [stable(line) for line in out.getvalue().decode().splitlines()]


def test_the_agent_writes_the_recorded_lines(tmp_path, monkeypatch):
    FakeNvml().install(monkeypatch)
    lines = record(tmp_path)
    if os.environ.get("GOLDEN_UPDATE"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text("\n".join(lines) + "\n")
        pytest.skip("golden lines recorded")
    assert lines == GOLDEN.read_text().splitlines()
