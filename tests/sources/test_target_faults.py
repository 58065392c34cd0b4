"""Targets that misbehave on purpose (loopback servers): each still reports `up=0` inside the gather, with one
log line, the other targets unaffected, and the agent's memory bounded whatever labels the server invents."""

import asyncio
import logging
import re
import subprocess
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from telegraf_llm_input import promtext
from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError, HttpPool, get
from telegraf_llm_input.promtext import parse
from telegraf_llm_input.sinks.prometheus import PrometheusSink
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import GatherContext, SourceEnv
from telegraf_llm_input.sources.target import ServerSource
from tests.fakes.llm import Snap, fake_ollama, fake_openai, fake_vllm, vllm_page
from tests.fakes.server import FakeServer, Reply
from tests.sources.test_server_faults import GOOD, Collect, S, servers
from tests.support.procs import find_binary, free_port

ROOT = Path(__file__).resolve().parents[2]


def agent_for(targets: list[dict], deadline: float) -> tuple[Agent, list]:
    config = parse_config({"targets": targets, "host": {"enabled": False}, "gpu": {"enabled": False}})
    sources = [s for s in build_sources(config, SourceEnv()) if s.name.startswith("server:")]
    return Agent(sources, [Collect()], deadline_s=deadline), sources


def gathers(targets: list[dict], n: int, deadline: float) -> list[list]:
    async def run():
        agent, _ = agent_for(targets, deadline)
        try:
            return [await agent.gather_once(time_ns=(i + 1) * 10 * S) for i in range(n)]
        finally:
            await agent.close()

    return asyncio.run(run())


def source_point(metrics, name):
    [m] = [m for m in metrics if m.measurement == "llm_agent" and m.tags.get("source") == name]
    return m.fields


def lines_about(caplog, needle):
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


def test_a_body_trickling_at_one_byte_per_tick_is_a_timeout_for_the_whole_request():
    """httpx's timeout is per read: each byte arrives in time. `timeout` bounds connect to last byte, and the
    first attempt spends it all, so the retries do not multiply it."""
    with FakeServer({"/metrics": Reply(GOOD, trickle=0.1)}) as slow:
        target = TargetConfig(url=slow.url, timeout=0.6, retries=3)

        async def run():
            pool = HttpPool()
            try:
                await get(pool, target, "/metrics")
            finally:
                await pool.close()

        with pytest.raises(FetchError) as err:
            asyncio.run(run())
    assert err.value.kind == "timeout" and "no answer within 0.6s" in str(err.value)
    assert slow.paths().count("/metrics") == 1


def test_a_trickling_target_reports_up0_inside_the_gather_with_one_line(caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    with fake_vllm(GOOD) as good, FakeServer({"/metrics": Reply(GOOD, trickle=0.2)}) as slow:
        out = gathers(
            [
                {"url": good.url, "type": "vllm", "name": "good"},
                {"url": slow.url, "type": "vllm", "name": "slow", "timeout": "1s", "retries": 2},
            ],
            n=2,
            deadline=3.0,
        )
    for metrics in out:
        [down] = servers(metrics, "slow")
        assert down.fields["up"] == 0
        [ok] = servers(metrics, "good")
        assert ok.fields["up"] == 1 and ok.fields["generation_tokens_total"] == 20
        # The source answered by itself, in time: not a deadline miss the agent had to cover.
        assert source_point(metrics, "server:slow")["ok"] == 1
    [line] = lines_about(caplog, "slow")
    assert "down" in line and "no answer within 1s" in line


class Stubborn:
    """An adapter that swallows the first cancellation (a library stuck in a call): the source cannot end
    itself at its budget, so only the agent can keep the target from going silent."""

    server_type = "vllm"

    async def read(self, fetch):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(30)


def test_a_source_past_the_deadline_still_gets_up0_from_the_agent(caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")

    async def run():
        pool = HttpPool()
        stuck = ServerSource(TargetConfig(url="http://127.0.0.1:9", name="stuck", type="vllm"), Stubborn(), pool)
        agent = Agent([stuck], [Collect()], deadline_s=0.5)
        try:
            return [await agent.gather_once(time_ns=t * S) for t in (10, 20)]
        finally:
            await agent.close()
            await pool.close()

    first, second = asyncio.run(run())
    for metrics in (first, second):  # the second gather finds the first still in flight
        [down] = servers(metrics, "stuck")
        assert down.fields["up"] == 0 and down.tags["server_type"] == "vllm"
        assert source_point(metrics, "server:stuck")["ok"] == 0
    [line] = lines_about(caplog, "stuck")
    assert "no result within 0.5s" in line and "reported as down" in line


def slow_lines(n: int) -> str:
    """Lines the parser's fast path refuses (too many tokens): the slow path, no memory kept (malformed). The name
    is one the vLLM table reads, so the parser cannot leave the lines out by their name."""
    return 'vllm:num_requests_running{a="1",b="2"} 1 2 3 4\n' * n


def test_a_huge_page_is_parsed_off_the_loop_and_stops_at_the_deadline(caplog):
    """A page that takes far longer to parse than the gather has (as a 200 MB page does) costs only its own
    target: the parse runs in a worker thread and stops at the deadline; the other target, whose answer
    arrives while the parse runs, is read in time (its 0.8 s timeout would expire on a blocked loop).

    The page is sized to take several times the deadline to parse (~30 MB of lines the fast path refuses,
    seconds of parsing), so a faster parser still does not finish it inside a 1 s gather."""
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    huge = GOOD + slow_lines(1_200_000)
    with FakeServer({"/metrics": Reply(huge)}) as big, fake_vllm(GOOD) as other:
        other.script("/metrics", Reply(GOOD, delay=0.3))
        [metrics] = gathers(
            [
                {"url": big.url, "type": "vllm", "name": "big", "max_body_bytes": "64MiB"},
                {"url": other.url, "type": "vllm", "name": "other", "timeout": "0.8s"},
            ],
            n=1,
            deadline=1.0,
        )
    [down] = servers(metrics, "big")
    assert down.fields["up"] == 0
    assert source_point(metrics, "server:big")["ok"] == 1  # the source itself kept the deadline
    [ok] = servers(metrics, "other")
    assert ok.fields["up"] == 1
    [line] = lines_about(caplog, "big")
    # The parser stops itself at the budget ("parsing stopped at the gather deadline after N of M
    # characters"); on a loaded machine the source's own bound may say it first.
    assert "down" in line and "gather deadline" in line


def test_ten_thousand_models_are_capped_logged_once_and_counted(caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    ids = [f"model-{i:05d}" for i in range(10_000)]
    with fake_openai(ids) as many, fake_vllm(GOOD) as good:
        out = gathers(
            [
                {"url": many.url, "type": "openai", "name": "many", "max_body_bytes": "16MiB"},
                {"url": good.url, "type": "vllm", "name": "good"},
            ],
            n=2,
            deadline=5.0,
        )
    for i, metrics in enumerate(out, 1):
        points = servers(metrics, "many")
        assert len(points) == 64 and all(p.fields["up"] == 1 for p in points)
        assert [p.tags["model"] for p in points] == ids[:64]  # the same models every gather
        assert source_point(metrics, "server:many")["models_dropped"] == i * (10_000 - 64)
        assert source_point(metrics, "server:good")["models_dropped"] == 0
        assert servers(metrics, "good")[0].fields["up"] == 1
    [line] = lines_about(caplog, "max_models")
    assert "many" in line and "10000" in line


def test_max_models_is_per_target():
    with fake_openai([f"m{i}" for i in range(10)]) as srv:
        [metrics] = gathers([{"url": srv.url, "type": "openai", "max_models": 3}], n=1, deadline=5.0)
    assert [p.tags["model"] for p in servers(metrics, srv.url)] == ["m0", "m1", "m2"]


def test_max_models_caps_ollamas_loaded_models_too():
    loaded = [{"name": f"m{i}", "size": 10, "size_vram": 10} for i in range(100)]
    with fake_ollama(loaded) as srv:
        [metrics] = gathers([{"url": srv.url, "type": "ollama", "name": "o", "max_models": 10}], n=1, deadline=5.0)
    assert len([m for m in metrics if m.measurement == "llm_model_loaded"]) == 10
    assert source_point(metrics, "server:o")["models_dropped"] == 90
    assert servers(metrics, "o")[0].fields["up"] == 1


def renaming_page(models: int):
    """A vLLM page whose `model_name` values are new on every scrape (a runaway label)."""
    scrape = {"n": 0}

    def page() -> str:
        scrape["n"] += 1
        return vllm_page(
            {f"m{scrape['n']}-{i}": Snap(prompt=scrape["n"], generation=2 * scrape["n"]) for i in range(models)}
        )

    return page


@contextmanager
def shared_names_full():
    """The parser's table of shared names (`promtext._SHARED`) grows to MAX_SHARED entries, and a dict doubles its
    table as it grows: one such step inside the traced gathers is megabytes that depend on what the tests before
    this one parsed, not on this one. Full, it does not move; afterwards it is as it was."""
    shared = promtext._SHARED
    filler = [f"filler {i}" for i in range(promtext.MAX_SHARED - len(shared))]
    shared.update(zip(filler, filler))
    try:
        yield
    finally:
        for key in filler:
            shared.pop(key, None)


def test_labels_renamed_every_scrape_keep_memory_flat_over_1000_gathers():
    models, n, traced_from, measured = 10, 1000, 800, (850, 999)
    with FakeServer({"/metrics": Reply(renaming_page(models))}) as srv:
        config = parse_config({"targets": [{"url": srv.url, "type": "vllm"}]})

        async def run():
            [source] = [s for s in build_sources(config, SourceEnv()) if s.name.startswith("server:")]
            tracked, traced = [], []
            try:
                for i in range(n):
                    if i == traced_from:  # tracing slows every allocation: only the last gathers
                        tracemalloc.start()
                    metrics = await source.gather(GatherContext(time_ns=(i + 1) * 10 * S, deadline_s=5.0))
                    assert len(servers(metrics, srv.url)) == models
                    tracked.append(source.tracked_series)
                    srv.requests.clear()  # the fake's own request log is not the agent's memory
                    if i in measured:
                        traced.append(tracemalloc.get_traced_memory()[0])
            finally:
                tracemalloc.stop()
                await source.close()
            return tracked, traced

        with shared_names_full():
            tracked, traced = asyncio.run(run())
    # Baselines of series gone for FORGET_AFTER gathers are dropped: at most that many scrapes' worth.
    assert max(tracked) == models * ServerSource.FORGET_AFTER == tracked[-1]
    # What the last 150 gathers left alive: nothing that grows (~50 KB; keeping every baseline: ~880 KB).
    assert traced[1] - traced[0] < 256 * 1024, traced


def test_a_series_absent_for_a_gather_keeps_its_baseline():
    """Forgetting is for series gone for several gathers: one missing scrape still gives a rate after."""
    pages = [
        vllm_page({"a": Snap(prompt=10), "b": Snap(prompt=10)}),
        vllm_page({"a": Snap(prompt=20)}),
        vllm_page({"a": Snap(prompt=30), "b": Snap(prompt=40)}),
    ]
    with fake_vllm(pages) as srv:
        out = gathers([{"url": srv.url, "type": "vllm"}], n=3, deadline=5.0)
    [b] = [m for m in servers(out[2], srv.url) if m.tags.get("model") == "b"]
    assert b.fields["prompt_tokens_per_s"] == pytest.approx(30 / 20)


def test_a_hung_target_fires_the_down_alert(tmp_path):
    """End to end: the trickling target's `up=0`, as the Prometheus output serves it, makes the shipped
    `LlmTargetDown` rule fire (promtool evaluates the rule on exactly the series the page holds)."""
    promtool = find_binary("promtool")
    if promtool is None:
        pytest.skip("promtool not installed: apt-get install prometheus (scripts/test.sh does)")
    port = free_port()

    async def run():
        agent, _ = agent_for([{"url": slow.url, "type": "vllm", "name": "hung", "timeout": "500ms"}], 1.5)
        agent.sinks = [PrometheusSink("prometheus", f"127.0.0.1:{port}", "/metrics", 60)]
        agent.global_tags = {"host": "box"}
        try:
            await agent.gather_once()
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        finally:
            await agent.close()

    with FakeServer({"/metrics": Reply(GOOD, trickle=0.2)}) as slow:
        page = asyncio.run(run())
    [series] = [s for s in parse(page).samples if s.name == "llm_server_up"]
    assert series.value == 0 and series.labels["target"] == "hung"
    rules = ROOT / "packaging" / "prometheus" / "alerts.yml"
    [rule] = [
        r for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"] if r["alert"] == "LlmTargetDown"
    ]
    labels = dict(series.labels)

    def render(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)

    selector = "llm_server_up{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    spec = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": selector, "values": "0x10"}],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "LlmTargetDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {**labels, **rule["labels"]},
                                "exp_annotations": {k: render(v) for k, v in rule["annotations"].items()},
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "hung_test.yml"
    test_file.write_text(yaml.safe_dump(spec))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
