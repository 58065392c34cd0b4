"""`type: auto` targets: the type the server source detected reaches llm_process and llm_probe."""

from telegraf_llm_input.config import parse_config
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.processors import build_processors


def test_auto_targets_get_the_detected_server_type():
    config = parse_config(
        {
            "targets": [
                {"url": "http://127.0.0.1:8000", "name": "a"},
                {"url": "http://127.0.0.1:8001", "name": "b", "type": "sglang"},
            ]
        }
    )
    processors = build_processors(config)

    def run(batch):
        for p in processors:
            batch = p.process(batch)
        return {(m.measurement, m.tags["target"]): m.tags["server_type"] for m in batch}

    proc_a = Metric("llm_process", {"target": "a", "server_type": "auto"}, {"up": 1}, 1)
    proc_b = Metric("llm_process", {"target": "b", "server_type": "sglang"}, {"up": 1}, 1)
    probe_a = Metric("llm_probe", {"target": "a", "server_type": "openai", "api": "openai_chat"}, {"success": 1}, 1)
    server_a = Metric("llm_server", {"target": "a", "server_type": "vllm", "model": "m"}, {"requests_running": 1}, 1)
    first = run([proc_a, proc_b, probe_a])
    assert first[("llm_process", "a")] == "auto" and first[("llm_probe", "a")] == "openai"  # nothing detected yet
    got = run([proc_a, proc_b, probe_a, server_a])
    assert got[("llm_process", "a")] == "vllm" and got[("llm_probe", "a")] == "vllm"
    assert got[("llm_process", "b")] == "sglang"
    later = run([proc_a, probe_a])  # server down: the tags do not flip back
    assert later[("llm_process", "a")] == "vllm" and later[("llm_probe", "a")] == "vllm"


def test_no_auto_target_no_processor():
    config = parse_config({"targets": [{"url": "http://127.0.0.1:8001", "type": "sglang"}]})
    assert not any(type(p).__name__ == "DetectedServerType" for p in build_processors(config))
