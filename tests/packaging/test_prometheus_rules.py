"""Every Prometheus alert rule, run by `promtool test rules`: a case where it fires and one where it stays quiet.

Series are sampled every 15 s (a gather interval users run); rules are evaluated every minute as Prometheus
does by default. Noisy inputs show the windows at work: a value that is high on average fires even when the
samples at the evaluation instants are low (a rule on the instant value would never fire), and one spike in
several intervals does not (an instant rule would flap between pending and inactive).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from telegraf_llm_input.schema import prometheus_name
from tests.support.procs import find_binary

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "packaging" / "prometheus" / "alerts.yml"
JOB = "telegraf-llm-input"
SERVER = {"host": "a", "target": "t", "model": "m", "server_type": "vllm"}
GPU = {"host": "a", "index": "0"}
PROC = {"host": "a", "target": "t", "server_type": "vllm"}


def alternate(*values: float, n: int = 80) -> str:
    """`a b a b ...`: n samples repeating the values (promtool has no syntax for a pattern)."""
    return " ".join(f"{values[i % len(values)]:g}" for i in range(n))


def series(name: str, labels: dict[str, str], values: str) -> dict:
    body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


@dataclass
class Case:
    alert: str
    why: str
    input: list[dict]
    at: str
    fires: list[dict] = field(default_factory=list)
    """Label sets of the firing alerts (severity added); empty: stays quiet."""


def m(measurement: str, field_name: str) -> str:
    return prometheus_name(measurement, field_name)


UP = {"job": JOB, "instance": "a:9273"}
GATHERS = {**UP, "host": "a"}
CASES = [
    Case(
        "LlmAgentSilent",
        "scrape fails (agent dead)",
        [series("up", UP, "1x10 0x30"), series(m("llm_agent", "gathers"), GATHERS, "1+1x10 stale")],
        "8m",
        [UP],
    ),
    Case(
        "LlmAgentSilent",
        "answers scrapes but stopped gathering (its series expired)",
        [series("up", UP, "1x40"), series(m("llm_agent", "gathers"), GATHERS, "1+1x10 stale")],
        "8m",
        [UP],
    ),
    Case(
        "LlmAgentSilent",
        "no agent reports at all",
        [series("up", {"job": "node", "instance": "x"}, "1x40")],
        "8m",
        [{"job": JOB}],
    ),
    Case(
        "LlmAgentSilent",
        "scraped and gathering",
        [series("up", UP, "1x40"), series(m("llm_agent", "gathers"), GATHERS, "1+1x40")],
        "8m",
    ),
    Case(
        "LlmTargetDown",
        "one host's server down, the other's up",
        [
            series(m("llm_server", "up"), SERVER, "1x4 0x30"),
            series(m("llm_server", "up"), {**SERVER, "host": "b"}, "1x40"),
        ],
        "6m",
        [SERVER],
    ),
    Case(
        "LlmTargetDown", "down for less than 2 minutes", [series(m("llm_server", "up"), SERVER, "1x16 0x4 1x20")], "6m"
    ),
    Case("LlmTargetBusy", "busy for 15 minutes", [series(m("llm_server", "busy"), SERVER, "1x80")], "15m", [SERVER]),
    Case("LlmTargetBusy", "busy now and then", [series(m("llm_server", "busy"), SERVER, alternate(1, 0))], "15m"),
    Case(
        "LlmTtftP95High",
        "above 10 s on average, though below it at every evaluation instant",
        [series(m("llm_server", "ttft_p95_ms"), SERVER, alternate(8, 15, 15, 15))],
        "12m",
        [SERVER],
    ),
    Case(
        "LlmTtftP95High",
        "spikes over 10 s, low on average (15 s / 2 s)",
        [series(m("llm_server", "ttft_p95_ms"), SERVER, alternate(15, 2))],
        "12m",
    ),
    Case(
        "LlmErrorRatioHigh",
        "15% fail on average, though 0% at every evaluation instant",
        [series(m("llm_server", "error_ratio"), SERVER, alternate(0, 0.2, 0.2, 0.2))],
        "12m",
        [SERVER],
    ),
    Case(
        "LlmErrorRatioHigh",
        "one bad interval in eight",
        [series(m("llm_server", "error_ratio"), SERVER, alternate(0.1, 0, 0, 0, 0, 0, 0, 0))],
        "12m",
    ),
    Case(
        "LlmQueueGrowing",
        "queue never empties and keeps growing",
        [series(m("llm_server", "requests_waiting"), SERVER, "1+1x80")],
        "18m",
        [SERVER],
    ),
    Case(
        "LlmQueueGrowing",
        "sawtooth: bursts that drain",
        [series(m("llm_server", "requests_waiting"), SERVER, alternate(0, 5, 10, 15))],
        "18m",
    ),
    Case(
        "LlmQueueGrowing",
        "a steady non-empty queue",
        [series(m("llm_server", "requests_waiting"), SERVER, "3x80")],
        "18m",
    ),
    Case(
        "LlmKvCacheFull",
        "above 90% on average, below it at every evaluation instant",
        [series(m("llm_server", "kv_cache_usage_ratio"), SERVER, alternate(0.85, 0.95, 0.95, 0.95))],
        "12m",
        [SERVER],
    ),
    Case(
        "LlmKvCacheFull",
        "full every other interval",
        [series(m("llm_server", "kv_cache_usage_ratio"), SERVER, alternate(0.95, 0.5))],
        "12m",
    ),
    Case(
        "LlmGpuMemoryFull",
        "79 of 80 GiB",
        [series(m("llm_gpu", "memory_used_mib"), GPU, "79x80"), series(m("llm_gpu", "memory_total_mib"), GPU, "80x80")],
        "12m",
        [GPU],
    ),
    Case(
        "LlmGpuMemoryFull",
        "half used",
        [series(m("llm_gpu", "memory_used_mib"), GPU, "40x80"), series(m("llm_gpu", "memory_total_mib"), GPU, "80x80")],
        "12m",
    ),
    Case(
        "LlmGpuThrottling",
        "slowed down all the time",
        [series(m("llm_gpu", "throttle_hw_slowdown"), GPU, "1x80")],
        "12m",
        [GPU],
    ),
    Case(
        "LlmGpuThrottling",
        "one interval in four",
        [series(m("llm_gpu", "throttle_hw_slowdown"), GPU, alternate(1, 0, 0, 0))],
        "12m",
    ),
    Case("LlmGpuThermal", "hot all the time", [series(m("llm_gpu", "throttle_thermal"), GPU, "1x80")], "12m", [GPU]),
    Case(
        "LlmGpuThermal",
        "one interval in four",
        [series(m("llm_gpu", "throttle_thermal"), GPU, alternate(1, 0, 0, 0))],
        "12m",
    ),
    Case("LlmGpuXid", "the counter grew", [series(m("llm_gpu", "xid_errors_total"), GPU, "0x20 1x40")], "8m", [GPU]),
    Case("LlmGpuXid", "no new XID", [series(m("llm_gpu", "xid_errors_total"), GPU, "2x60")], "8m"),
    Case(
        "LlmGpuXid",
        "grew, then the agent died: resolves",
        [series(m("llm_gpu", "xid_errors_total"), GPU, "0x20 1x4 stale")],
        "8m",
    ),
    Case(
        "LlmProcessRestarted",
        "restarted",
        [series(m("llm_process", "restarts_total"), PROC, "0x20 1x40")],
        "8m",
        [PROC],
    ),
    Case("LlmProcessRestarted", "no restart", [series(m("llm_process", "restarts_total"), PROC, "0x60")], "8m"),
    Case(
        "LlmProcessRestarted",
        "restarted, then the agent died: resolves",
        [series(m("llm_process", "restarts_total"), PROC, "0x20 1x4 stale")],
        "8m",
    ),
    Case("LlmServerExposed", "listens on 0.0.0.0", [series(m("llm_process", "exposed"), PROC, "1x40")], "5m", [PROC]),
    Case("LlmServerExposed", "loopback only", [series(m("llm_process", "exposed"), PROC, "0x40")], "5m"),
    Case(
        "LlmAgentDropping",
        "dropped points",
        [series(m("llm_agent", "output_dropped_points"), {"host": "a"}, "0x20 50x40")],
        "8m",
        [{"host": "a"}],
    ),
    Case(
        "LlmAgentDropping",
        "nothing dropped",
        [series(m("llm_agent", "output_dropped_points"), {"host": "a"}, "0x60")],
        "8m",
    ),
]


def _rules() -> dict[str, dict]:
    return {r["alert"]: r for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}


def test_every_rule_has_a_firing_and_a_quiet_case():
    rules = _rules()
    for name in rules:
        cases = [c for c in CASES if c.alert == name]
        assert any(c.fires for c in cases), f"{name}: no case where it fires"
        assert any(not c.fires for c in cases), f"{name}: no case where it stays quiet"
    assert {c.alert for c in CASES} <= set(rules), "a case names a rule that does not exist"


def _annotations(rule: dict, labels: dict[str, str]) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them for these labels (only `{{ $labels.x }}` is used)."""
    return {
        k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda g: labels.get(g.group(1), ""), v)
        for k, v in rule["annotations"].items()
    }


def _test_file(tmp_path: Path) -> Path:
    rules = _rules()
    tests = []
    for case in CASES:
        rule = rules[case.alert]
        severity = rule["labels"]["severity"]
        tests.append(
            {
                "name": f"{case.alert}: {case.why}",
                "interval": "15s",
                "input_series": case.input,
                "alert_rule_test": [
                    {
                        "eval_time": case.at,
                        "alertname": case.alert,
                        "exp_alerts": [
                            {
                                "exp_labels": {**labels, "severity": severity},
                                "exp_annotations": _annotations(rule, labels),
                            }
                            for labels in case.fires
                        ],
                    }
                ],
            }
        )
    path = tmp_path / "rules-test.yml"
    path.write_text(
        yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}, sort_keys=False)
    )
    return path


def test_promtool_runs_every_case(tmp_path):
    promtool = find_binary("promtool")
    if promtool is None:
        pytest.skip("promtool not installed: apt-get install prometheus (scripts/test.sh does)")
    result = subprocess.run(
        [promtool, "test", "rules", str(_test_file(tmp_path))], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "SUCCESS" in result.stdout + result.stderr
