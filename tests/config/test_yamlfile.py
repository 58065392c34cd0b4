"""Which YAML parser reads a config, and that a run keeps none: PyYAML's own for a usual config, dropped by
`release` once read (its libyaml binding, once loaded, would hold all of PyYAML for the process's life);
libyaml's for a large one. Each in a fresh interpreter: this test process has PyYAML loaded already."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from telegraf_llm_input.config import load_config
from telegraf_llm_input.config.yamlfile import FAST_BYTES

SMALL = "agent:\n  interval: 5s\ntags:\n  zone: '0123'\n  rack: 0123\ntargets:\n  - url: http://127.0.0.1:8000\n"

IN_A_FRESH_PROCESS = """
import gc, json, sys, weakref
from telegraf_llm_input.config import load_config
from telegraf_llm_input.config.yamlfile import release
config = load_config(sys.argv[1])
import yaml
libyaml, loader = yaml.__with_libyaml__, weakref.ref(yaml.SafeLoader)
del yaml
release()
gc.collect()
left = sorted(n for n in sys.modules if n == "yaml" or n.startswith("yaml."))
again = load_config(sys.argv[1])
print(json.dumps({"libyaml": libyaml, "left": left, "freed": loader() is None, "config": repr(config),
                  "again": repr(again) == repr(config)}))
"""


def read_fresh(path) -> dict:
    out = subprocess.run([sys.executable, "-c", IN_A_FRESH_PROCESS, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_usual_config_is_read_without_libyaml_and_the_parser_is_dropped_after(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(SMALL)
    got = read_fresh(path)
    assert got["libyaml"] is False and got["left"] == [] and got["freed"]
    assert got["again"]  # a later config file imports it again
    # the same config as libyaml's parser (this process's PyYAML has it) reads: numbers keep their text too
    assert got["config"] == repr(load_config(path))
    assert "'0123'" in got["config"]


def test_a_large_config_is_read_by_libyaml_which_stays(tmp_path):
    path = tmp_path / "agent.yaml"
    targets = "".join(f"  - url: http://127.0.0.1:{8000 + i}\n    name: t{i}\n" for i in range(FAST_BYTES // 40))
    path.write_text("targets:\n" + targets)
    assert path.stat().st_size > FAST_BYTES
    got = read_fresh(path)
    if yaml.__with_libyaml__:  # PyYAML built with libyaml, as the wheels are
        assert got["libyaml"] is True and got["left"] and not got["freed"]
    assert got["again"] and got["config"] == repr(load_config(path))
