"""The schema checked both ways against the real agent: what it emits is documented, what is documented is emitted.

Scenarios: every server type's life (tests/fakes/life.py) with its process followed, the GPU (fake NVML, with
the nvidia_smi compat measurement and a lost GPU), the host, a request log and a streaming probe.
A documented field no scenario emits must be listed below with the reason, so the list is the honest gap.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from line_protocol_parser import parse_line

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.schema import ALL, BY_NAME
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv
from telegraf_llm_input.sources.probe import ProbeSource
from tests.fakes.life import KINDS, live
from tests.fakes.nvml import FakeNvml
from tests.fakes.streaming import Script, StreamingServer

NOT_EMITTED_HERE = {
    ("llm_server", "energy_j_per_token"): "a GPU whose energy counter moves while tokens are generated "
    "(tests/sources/test_energy.py)",
    ("llm_process", "gpu_indices"): "a server process holding GPU memory on a GPU the fake NVML lists for it "
    "(tests/sources/test_process.py)",
    ("llm_probe", "load_ms"): "Ollama's native API answering a probe (tests/probe)",
    ("llm_probe", "server_decode_tokens_per_s"): "Ollama/llama.cpp native timings in a probe answer (tests/probe)",
    ("llm_probe", "reasoning_tokens"): "a reasoning model's usage details (tests/probe)",
    ("llm_probe", "reasoning_ms"): "a reasoning model (tests/probe)",
    ("llm_probe", "connect_ms"): "only when a probe opens a new connection after the first (tests/probe)",
    ("llm_probe", "server_prefill_ms"): "llama.cpp/Ollama native timings in a probe answer (tests/probe)",
    ("llm_probe", "cache_tokens"): "llama.cpp `timings.cache_n` in a probe answer (tests/probe)",
    ("llm_probe", "skipped"): "an Ollama or LM Studio target with no model loaded (tests/sources/test_probe.py)",
    ("llm_gpu", "utilization_renderer"): "an Apple Silicon GPU (`ioreg`; tests/sources/test_gpu_backends.py)",
    ("llm_gpu", "utilization_tiler"): "an Apple Silicon GPU (`ioreg`)",
    ("llm_gpu", "memory_allocated_mib"): "an Apple Silicon GPU (`ioreg`)",
    (
        "llm_process",
        "gpu_busy_percent",
    ): "an AMD/Intel GPU the server's process has DRM fds on (tests/sources/test_drm_fdinfo.py)",
    ("llm_gpu", "xid_last"): "an XID event raised between two gathers (tests/sources/test_gpu.py)",
    ("llm_requests", "grouped_as_other"): "more groups than `max_groups` (tests/sources/test_requestlog.py)",
    ("llm_agent", "output_buffered_points"): "a database output (tests/sinks, tests/realserver/test_life.py)",
    ("llm_agent", "output_dropped_points"): "a database output",
    ("llm_agent", "output_written_points"): "a database output",
    ("llm_agent", "output_errors"): "a database output",
}


PLATFORM = {
    ("llm_host", "memory_pressure_some_avg10"): "Linux PSI (/proc/pressure): absent on macOS, some kernels",
    ("llm_host", "memory_pressure_level"): "macOS only (`kern.memorystatus_vm_pressure_level`)",
}
"""Emitted or not depending on the machine the tests run on: checked by neither side."""


def collect(lines: list[str], seen: dict[str, dict[str, set[str]]]) -> None:
    for line in lines:
        point = parse_line(line)
        entry = seen.setdefault(point["measurement"], {"tags": set(), "fields": set()})
        entry["tags"] |= set(point["tags"])
        entry["fields"] |= set(point["fields"])


def probe_lines() -> list[str]:
    import io

    from telegraf_llm_input.sinks.stdout import StdoutSink

    with StreamingServer(Script(ttft_s=0.0, interval_s=0.0, cache_tokens=3)) as srv:
        config = parse_config(
            {
                "host": {"enabled": False},
                "gpu": {"enabled": False},
                "targets": [
                    {
                        "url": srv.url,
                        "type": "openai",
                        "name": "probed",
                        "process": {"enabled": False},
                        "probe": {"enabled": True, "every": "100ms"},
                    }
                ],
            }
        )
        sources = build_sources(config, SourceEnv())
        [probe] = [s for s in sources if isinstance(s, ProbeSource)]
        out = io.BytesIO()

        async def go():
            agent = Agent(sources, [StdoutSink(out)], deadline_s=2.0)
            await agent.gather_once()
            for _ in range(300):
                if probe.probes >= 2:
                    break
                await asyncio.sleep(0.02)
            await agent.gather_once()
            await agent.close()

        asyncio.run(go())
    return out.getvalue().decode().splitlines()


def serverlog_lines(tmp) -> list[str]:
    """An Ollama target whose log (real-format lines) has requests, errors of both kinds and a model load."""
    import io

    from telegraf_llm_input.sinks.stdout import StdoutSink
    from tests.fakes.serverlogs import OllamaLog

    log = OllamaLog(tmp / "ollama.log")
    log.path.write_text("")
    config = parse_config(
        {
            "host": {"enabled": False},
            "gpu": {"enabled": False},
            "targets": [
                {"url": "http://127.0.0.1:9", "type": "ollama", "log": str(log.path), "process": {"enabled": False}}
            ],
        }
    )
    out = io.BytesIO()

    async def go():
        agent = Agent(build_sources(config, SourceEnv()), [StdoutSink(out)], deadline_s=2.0)
        await agent.gather_once()
        for status in (200, 404, 500):
            log.access(status, 2_000_000, "/api/chat")
        log.load(1.5)
        await agent.gather_once()
        await agent.close()

    asyncio.run(go())
    return out.getvalue().decode().splitlines()


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    nvml = FakeNvml()
    nvml.install(monkeypatch)
    nvml.lose(7)
    tmp = tmp_path_factory.mktemp("coverage")
    log = tmp / "requests.jsonl"
    log.write_text(
        "".join(
            json.dumps(
                {
                    "duration_ms": 120.5 + i,
                    "ttft_ms": 20 + i,
                    "prompt_tokens": 10 + i,
                    "completion_tokens": 40,
                    "status": "success" if i else "error",
                    "model": "qwen",
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    seen: dict[str, dict[str, set[str]]] = {}
    try:
        for i, kind in enumerate(KINDS):
            extra = {}
            if i == 0:  # one run with everything else on
                extra = {
                    "gpu": {"nvidia_smi_compat": True},
                    "host": {"model_dir": str(tmp)},
                    "logs": [{"path": str(log), "from": "beginning", "group_by": ["model"]}],
                }
            collect(live(kind, process=True, **extra), seen)
        collect(probe_lines(), seen)
        collect(serverlog_lines(tmp), seen)
    finally:
        monkeypatch.undo()
    return seen


def test_everything_emitted_is_documented(emitted):
    for measurement, got in sorted(emitted.items()):
        doc = BY_NAME.get(measurement)
        assert doc is not None, f"measurement {measurement} is not in the schema"
        open_tags = any(t.startswith("<") for t in doc.tags)
        server_labels = measurement == "llm_server"  # a `prometheus` target's labels become tags
        undocumented_tags = got["tags"] - set(doc.tags) - {"host"}
        assert open_tags or server_labels or not undocumented_tags, (measurement, undocumented_tags)
        for field in got["fields"]:
            spec = doc.field(field)
            if spec is None and measurement == "llm_server":
                continue  # json/prometheus targets' own names: the documented `*`
            assert spec is not None, f"{measurement} {field}: emitted but not documented"


def test_everything_documented_is_emitted_or_listed(emitted):
    missing = []
    for m in ALL:
        got = emitted.get(m.name, {"fields": set()})["fields"]
        for f in m.fields:
            if f.name == "*" or (m.name, f.name) in NOT_EMITTED_HERE or (m.name, f.name) in PLATFORM:
                continue
            if "*" in f.name:
                head, _, tail = f.name.partition("*")
                if any(g.startswith(head) and g.endswith(tail) for g in got):
                    continue
            elif f.name in got:
                continue
            missing.append((m.name, f.name))
    assert missing == [], missing
    stale = [k for k in NOT_EMITTED_HERE if k[1] in emitted.get(k[0], {"fields": set()})["fields"]]
    assert stale == [], f"emitted after all: take them off NOT_EMITTED_HERE: {stale}"
