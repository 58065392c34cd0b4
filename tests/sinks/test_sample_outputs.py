import yaml

from telegraf_llm_input.config import parse_config, sample_config


def test_commented_outputs_example_is_a_valid_config():
    text = sample_config()
    block = text[text.index("# outputs:") :]
    uncommented = "\n".join(line[2:] if line.startswith("# ") else line for line in block.splitlines())
    uncommented = uncommented.replace("${INFLUX_TOKEN}", "t")
    config = parse_config(yaml.safe_load(uncommented))
    assert [o.type for o in config.outputs] == ["stdout", "influxdb_v2", "influxdb_v1", "prometheus"]
    assert config.outputs[3].listen == "127.0.0.1:9273"
