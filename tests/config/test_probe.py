import re
from importlib import resources

import pytest
import yaml

from telegraf_llm_input.config import parse_config
from telegraf_llm_input.config.loader import ConfigError


def test_sample_config_probe_example_is_valid_when_uncommented(tmp_path):
    text = resources.files("telegraf_llm_input").joinpath("sample-config.yaml").read_text()
    block = re.search(r"# --- probe example ---\n(.*?)# --- end probe example ---", text, re.S).group(1)
    uncommented = "\n".join(line[2:] for line in block.splitlines())
    token = tmp_path / "token"
    token.write_text("abc\n")
    data = yaml.safe_load(uncommented.replace("/etc/telegraf-llm-input/token", str(token)))
    cfg = parse_config(data)
    first, second = cfg.targets
    assert first.probe.enabled and first.probe.api == "ollama" and first.probe.every == 60.0
    assert second.probe.max_tokens == 512 and second.bearer_token == "abc"


def test_probe_is_off_by_default():
    cfg = parse_config({"targets": [{"url": "http://127.0.0.1:8000"}]})
    assert cfg.targets[0].probe.enabled is False


@pytest.mark.parametrize(
    "probe, problem",
    [
        ({"max_tokens": 5000}, "max_tokens"),
        ({"every": "0s"}, "every"),
        ({"timeout": 0}, "timeout"),
        ({"api": "llamacpp", "messages": [{"role": "user", "content": "x"}]}, "plain prompt"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "x"}]}, "either prompt or messages"),
        ({"api": "grpc"}, "must be one of"),
    ],
)
def test_bad_probe_config_is_one_clear_line(probe, problem):
    with pytest.raises(ConfigError) as err:
        parse_config({"targets": [{"url": "http://127.0.0.1:8000", "probe": probe}]})
    assert problem in str(err.value) and "targets[0].probe" in str(err.value) and "\n" not in str(err.value)
