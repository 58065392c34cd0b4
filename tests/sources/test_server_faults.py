"""Every fault: one clear log line, up=0 (or busy=1), no crash, other targets unaffected."""

import asyncio
import logging
import socket

import pytest

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv
from tests.fakes.llm import Snap, fake_vllm, vllm_page
from tests.fakes.server import FakeServer, Reply
from tests.support.procs import free_port

S = 1_000_000_000
GOOD = vllm_page({"m": Snap(prompt=10, generation=20, finished={"stop": 1})})


class Collect:
    name = "collect"

    def __init__(self):
        self.batches = []

    async def write(self, metrics):
        self.batches.append(list(metrics))

    def stats(self):
        return {}

    async def close(self):
        pass


def gather(targets: list[dict], times=(10 * S,), deadline=5.0):
    config = parse_config({"targets": targets, "host": {"enabled": False}})

    async def run():
        sources = build_sources(config, SourceEnv())
        agent = Agent(sources, [Collect()], deadline_s=deadline)
        out = [await agent.gather_once(time_ns=t) for t in times]
        for s in sources:
            await s.close()
        return out

    return asyncio.run(run())


def servers(metrics, target):
    return [m for m in metrics if m.measurement == "llm_server" and m.tags["target"] == target]


def refused_url():
    return f"http://127.0.0.1:{free_port()}"


FAULTS = {
    "refused": (None, "connection refused"),
    "timeout": (Reply(GOOD, delay=3.0), "no answer within 0.5s"),
    "http500": (Reply("boom", status=500), "HTTP 500"),
    "garbage": (Reply("<html><body>hello</body></html>\n\x00\x01 not metrics"), "no Prometheus samples"),
    "too_big": (Reply("# " + "x" * 5000 + "\n" + GOOD), "over max_body_bytes"),
    "bad_utf8": (Reply(GOOD.encode() + b"\n# \xff\xfe broken\n"), "not valid UTF-8"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_gives_up0_one_line_and_spares_the_other_target(fault, caplog):
    reply, expected = FAULTS[fault]
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    with fake_vllm(GOOD) as good, FakeServer({"/metrics": reply} if reply else {}) as bad:
        bad_url = refused_url() if reply is None else bad.url
        out = gather(
            [
                {"url": good.url, "type": "vllm", "name": "good"},
                {
                    "url": bad_url,
                    "type": "vllm",
                    "name": "bad",
                    "timeout": "0.5s",
                    "retries": 1,
                    "max_body_bytes": 4096,
                    "process": {"enabled": False},
                },
            ],
            times=(10 * S, 20 * S),
        )
    for metrics in out:
        [down] = servers(metrics, "bad")
        assert down.fields["up"] == 0 and down.tags["server_type"] == "vllm"
        [ok] = servers(metrics, "good")
        assert ok.fields["up"] == 1 and ok.fields["generation_tokens_total"] == 20
    lines = [r.getMessage() for r in caplog.records if "bad" in r.getMessage()]
    assert len(lines) == 1, lines  # once, not once per gather
    assert expected in lines[0] and "\n" not in lines[0]


def test_retries_only_until_success_on_5xx():
    with FakeServer({"/metrics": [Reply("x", status=502), Reply("x", status=503), Reply(GOOD)]}) as fake:
        [metrics] = gather([{"url": fake.url, "type": "vllm", "retries": 2}])
        assert servers(metrics, fake.url)[0].fields["up"] == 1
        assert fake.paths().count("/metrics") == 3


def test_no_retry_on_4xx():
    with FakeServer({"/metrics": Reply("no", status=404)}) as fake:
        [metrics] = gather([{"url": fake.url, "type": "vllm", "retries": 2}])
        assert servers(metrics, fake.url)[0].fields["up"] == 0
        assert fake.paths().count("/metrics") == 1


def test_401_without_token_and_headers_token_sent(caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    with FakeServer({"/metrics": Reply(GOOD)}, api_key="s3cret-token", protected=["/metrics"]) as fake:
        [no_token] = gather([{"url": fake.url, "type": "vllm", "name": "nokey"}])
        token_file = tmp_path / "key"
        token_file.write_text("s3cret-token\n")
        [with_token] = gather(
            [
                {
                    "url": fake.url,
                    "type": "vllm",
                    "name": "key",
                    "bearer_token_file": str(token_file),
                    "headers": {"X-Team": "ml"},
                }
            ]
        )
        sent = fake.requests[-1].headers
    assert servers(no_token, "nokey")[0].fields["up"] == 0
    assert servers(with_token, "key")[0].fields["up"] == 1
    assert sent["Authorization"] == "Bearer s3cret-token" and sent["X-Team"] == "ml"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP 401" in text and "s3cret" not in text


def test_hung_server_does_not_hold_the_body_reader(caplog):
    """A server that sends headers and then never the body times out like any other."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    try:
        [metrics] = gather([{"url": f"http://127.0.0.1:{port}", "type": "vllm", "timeout": "300ms", "retries": 0}])
    finally:
        listener.close()
    assert servers(metrics, f"http://127.0.0.1:{port}")[0].fields["up"] == 0


def test_retries_stay_inside_the_gather_deadline():
    """timeout 1s x 6 attempts would outlast a 1.5 s gather: the target still reports up=0 in time."""
    with FakeServer({"/metrics": Reply(GOOD, delay=5.0)}) as fake:
        [metrics] = gather([{"url": fake.url, "type": "vllm", "timeout": "1s", "retries": 5}], deadline=1.5)
    [m] = servers(metrics, fake.url)
    assert m.fields["up"] == 0


def test_json_that_lies_about_its_shape_is_down_not_a_crash(caplog):
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    with FakeServer(
        {
            "/api/version": Reply({"version": "0.6.5"}),
            "/api/ps": Reply({"models": [{"name": "m", "size": 10, "size_vram": 5, "expires_at": 12}]}),
            "/props": Reply(["not", "an", "object"]),
            "/health": Reply({"status": "ok"}),
            "/slots": Reply({"slots": "?"}),
            "/metrics": Reply("llamacpp:requests_processing 1\n"),
        }
    ) as fake:
        [metrics] = gather(
            [{"url": fake.url, "type": "ollama", "name": "o"}, {"url": fake.url, "type": "llamacpp", "name": "l"}]
        )
    [o] = servers(metrics, "o")
    [lm] = servers(metrics, "l")
    assert o.fields["up"] == 1 and lm.fields["up"] == 1 and lm.fields["requests_running"] == 1
    [loaded] = [m for m in metrics if m.measurement == "llm_model_loaded"]
    assert loaded.fields["gpu_offload_ratio"] == 0.5 and "seconds_until_unload" not in loaded.fields


def test_down_reason_is_the_logged_reason_until_the_target_is_up_again(caplog):
    """`down_reasons()` (what `top` shows) says exactly what the `down:` log line said, and clears on recovery."""
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    with FakeServer({"/metrics": [Reply("boom", status=500), Reply(GOOD)]}) as fake:
        [source] = build_sources(
            parse_config(
                {
                    "targets": [
                        {"url": fake.url, "type": "vllm", "name": "t", "retries": 0, "process": {"enabled": False}}
                    ],
                    "host": {"enabled": False},
                    "gpu": {"enabled": False},
                }
            ),
            SourceEnv(),
        )

        async def run():
            agent = Agent([source], [Collect()], deadline_s=5.0)
            await agent.gather_once(time_ns=10 * S)
            down = dict(source.down_reasons())
            await agent.gather_once(time_ns=20 * S)
            await agent.close()
            return down, dict(source.down_reasons())

        down, up = asyncio.run(run())
    [line] = [r.getMessage() for r in caplog.records if "down:" in r.getMessage()]
    assert down == {"t": line.split("t: down: ", 1)[1]} and "HTTP 500" in down["t"]
    assert up == {}
