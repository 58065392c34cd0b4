import subprocess
import sys

CODE = """
import sys
from telegraf_llm_input.config import parse_config
from telegraf_llm_input.sinks import build_sinks
{extra}
sinks = build_sinks(parse_config({cfg!r}))
print(type(sinks[0]).__name__, 'influxdb_client' in sys.modules)
"""


def run(cfg):
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(cfg=cfg, extra="")], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_stdout_path_never_imports_influxdb_client():
    assert run({}) == ["StdoutSink", "False"]
    assert run({"outputs": [{"type": "stdout"}, {"type": "influxdb_v1"}]}) == ["StdoutSink", "False"]


def test_influxdb_v2_output_imports_it():
    assert run({"outputs": [{"type": "influxdb_v2", "bucket": "b", "org": "o", "token": "t"}]}) == [
        "BatchingSink",
        "True",
    ]
