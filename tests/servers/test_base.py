"""The declarative detection rules (`servers/base.py`), against a real HTTP server answering each way."""

from __future__ import annotations

import asyncio

import pytest

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import HttpPool
from telegraf_llm_input.servers.base import Answers, Fetcher, Rule
from tests.fakes.server import FakeServer, Reply

MODELS = {"object": "list", "data": [{"id": "a", "state": "loaded"}, {"id": "b", "state": "not-loaded"}]}


def holds(rule: Rule, routes: dict) -> tuple[bool, list[str]]:
    with FakeServer(routes) as fake:

        async def go():
            pool = HttpPool()
            try:
                answers = Answers(Fetcher(pool, TargetConfig(url=fake.url, timeout=1.0)))
                return await rule.holds(answers), [e.kind for e in answers.errors]
            finally:
                await pool.close()

        return asyncio.run(go())


@pytest.mark.parametrize(
    "rule,routes,expected",
    [
        (Rule("/metrics", contains="vllm:"), {"/metrics": Reply("vllm:num_requests_running 1\n")}, True),
        (Rule("/metrics", contains="vllm:"), {"/metrics": Reply("sglang:num_running_reqs 1\n")}, False),
        (Rule("/info", keys=("model_id", "max_concurrent_requests")), {"/info": Reply({"model_id": "m"})}, False),
        (
            Rule("/info", keys=("model_id", "max_concurrent_requests")),
            {"/info": Reply({"model_id": "m", "max_concurrent_requests": 128})},
            True,
        ),
        (
            Rule("/props", any_keys=("default_generation_settings", "total_slots")),
            {"/props": Reply({"total_slots": 2})},
            True,
        ),
        (Rule("/props", any_keys=("default_generation_settings", "total_slots")), {"/props": Reply({"x": 1})}, False),
        (Rule("/v1/models", list_key="data"), {"/v1/models": Reply({"data": {}})}, False),
        (Rule("/v1/models", list_key="data", each_has="state"), {"/v1/models": Reply(MODELS)}, True),
        (Rule("/v1/models", list_key="data", each_has="state"), {"/v1/models": Reply({"data": [{"id": "a"}]})}, False),
        (Rule("/api/version", keys=("version",)), {"/api/version": Reply("not json")}, False),
        (Rule("/api/version", keys=("version",)), {"/api/version": Reply(["version"])}, False),
    ],
)
def test_a_rule_holds_only_for_the_answer_it_describes(rule, routes, expected):
    assert holds(rule, routes)[0] is expected


def test_a_path_that_fails_is_no_match_and_its_error_is_kept_for_detection():
    assert holds(Rule("/metrics", contains="vllm:"), {"/metrics": Reply("gone", status=404)}) == (
        False,
        ["http_status"],
    )
