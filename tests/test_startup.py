"""What a gather imports: only what the config uses (start-up time and memory sit beside the model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from telegraf_llm_input.nvml import library_loads
from tests.support.procs import free_port

# Runs one `--once` gather in a fresh interpreter and prints the modules that were really loaded
# (a lazily imported module sits in sys.modules before first use; its submodules do not). Discovery looks
# at a port nothing listens on: a model server on the developer's machine (Ollama on 11434) is not ours.
SCRIPT = r"""
import telegraf_llm_input.__main__  # the program's start-up: asyncio without ssl (tlsgate)
import asyncio, json, os, sys
from telegraf_llm_input import cli
config = cli._load(cli._parser().parse_args(sys.argv[1:]))
config.discovery.ports = [int(os.environ["QUIET_PORT"])]
asyncio.run(cli.run(config, signal_mode="none", once=True))
print(json.dumps(sorted(sys.modules)))
"""

HEAVY = [
    "ssl",
    "httpx._client",
    "telegraf_llm_input.http11",
    "telegraf_llm_input.h11io",
    "h11",
    "telegraf_llm_input.servers.base",
    "yaml.loader",
    "influxdb_client",
    "telegraf_llm_input.promtext",
    "telegraf_llm_input.servers.promtable",
    "telegraf_llm_input.servers.vllm",
    "telegraf_llm_input.probe.runner",
    "telegraf_llm_input.sources.requestlog",
    "telegraf_llm_input.sinks.prometheus",
    "telegraf_llm_input.sinks.influx",
    "telegraf_llm_input.sinks.influx_v2",
    "telegraf_llm_input.proxy.server",
]


def loaded(*args: str) -> set[str]:
    env = {**os.environ, "QUIET_PORT": str(free_port())}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=60, check=True, env=env
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_defaults_load_no_http_client_yaml_adapters_probe_or_outputs():
    modules = loaded()
    assert "telegraf_llm_input.sources.host" in modules and "telegraf_llm_input.sources.discovery" in modules
    assert [m for m in HEAVY if m in modules] == []
    # nvidia-ml-py only once the driver's library is there; the Apple GPU reader (plistlib) only on a Mac
    absent = (["pynvml"] if not library_loads() else []) + (["plistlib"] if sys.platform != "darwin" else [])
    assert [m for m in absent if m in modules] == []


def test_what_a_config_uses_is_loaded(tmp_path):
    log = tmp_path / "requests.jsonl"
    log.write_text("")
    config = tmp_path / "config.yaml"
    config.write_text(f"""
targets:
  - url: http://127.0.0.1:{free_port()}
    type: vllm
    probe: {{enabled: true, model: m}}
logs:
  - path: {log}
outputs:
  - type: prometheus
    listen: 127.0.0.1:{free_port()}
""")
    modules = loaded("--config", str(config))
    assert [m for m in HEAVY if m not in modules] == [
        "influxdb_client",
        "telegraf_llm_input.sinks.influx",
        "telegraf_llm_input.sinks.influx_v2",
        "telegraf_llm_input.proxy.server",
    ]


def test_psutil_waits_for_a_watched_process(tmp_path):
    """Targets whose process is not watched, no host source, GPUs off: psutil (and the process source) and ctypes
    (the NVIDIA driver check) stay unloaded;
    the same target with its process watched loads them."""
    config = tmp_path / "config.yaml"
    target = f"{{url: 'http://127.0.0.1:{free_port()}', type: vllm, process: {{enabled: %s}}}}"
    body = "host: {enabled: false}\ngpu: {enabled: false}\ntargets: [%s]\n"
    config.write_text(body % (target % "false"))
    assert {"psutil", "telegraf_llm_input.sources.process", "ctypes._endian"} & loaded("--config", str(config)) == set()
    config.write_text(body % (target % "true"))
    assert {"psutil", "telegraf_llm_input.sources.process"} <= loaded("--config", str(config))


def test_reading_a_proxy_never_loads_the_proxys_extra(tmp_path):
    """The proxy's parser (httptools) is the proxy command's only."""
    config = tmp_path / "config.yaml"
    config.write_text(f"targets:\n  - url: http://127.0.0.1:{free_port()}\n    type: proxy\n")
    modules = loaded("--config", str(config))
    assert "telegraf_llm_input.servers.proxy" in modules or "telegraf_llm_input.servers.base" in modules
    assert [m for m in ("httptools", "telegraf_llm_input.proxy.upstream") if m in modules] == []


# The whole command as a user runs it (`main`), then the modules still loaded, written to a file.
MAIN_SCRIPT = r"""
import telegraf_llm_input.__main__
import json, os, sys
from telegraf_llm_input import cli
code = cli.main(sys.argv[2:])
open(sys.argv[1], "w").write(json.dumps([code, sorted(sys.modules)]))
"""


def test_a_scrape_run_keeps_no_config_parser_api_table_log_format_or_archive_modules(tmp_path):
    """After reading its config, a run of a plain vLLM target holds no PyYAML (dropped once the config is read),
    no probe API table (no probe), no server log format (no log) and none of the archive modules (zlib's
    siblings bz2 and lzma, shutil) that argparse would bring for the terminal's width."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"targets: [{{url: 'http://127.0.0.1:{free_port()}', type: vllm, process: {{enabled: false}}}}]\n"
        "host: {enabled: false}\ngpu: {enabled: false}\ndiscovery: {enabled: false}\n"
    )
    out = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", MAIN_SCRIPT, str(out), "--config", str(config), "--once"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    code, modules = json.loads(out.read_text())
    assert code == 0 and "telegraf_llm_input.servers.vllm" in modules
    kept = [m for m in modules if m.split(".")[0] in ("yaml", "shutil", "bz2", "lzma")]
    kept += [m for m in modules if m.startswith(("telegraf_llm_input.apis.", "telegraf_llm_input.serverlogs"))]
    assert kept == []
