"""The one generator: `python -m telegraf_llm_input.docs [--check] [--root DIR]`.

Hand-written docs hold `<!-- generated:NAME -->` ... `<!-- end generated:NAME -->` regions; each NAME is
rendered from the code (schema, config dataclasses). Whole generated files (the sample config) are written
entirely. The dashboards and alert rules have their own renderer (packaging/grafana/generate.py), run from here.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from telegraf_llm_input import install
from telegraf_llm_input.config import AgentConfig, Config
from telegraf_llm_input.config.gpu import GpuConfig
from telegraf_llm_input.config.host import HostConfig
from telegraf_llm_input.config.outputs import InfluxV1Output, InfluxV2Output, PrometheusOutput
from telegraf_llm_input.config.probe import ProbeConfig
from telegraf_llm_input.config.requestlog import LogConfig
from telegraf_llm_input.config.targets import DiscoveryConfig, TargetConfig
from telegraf_llm_input.docs import sample
from telegraf_llm_input.docs.configref import markdown_table
from telegraf_llm_input.proxy.options import DEFAULT_LISTEN, DEFAULT_UPSTREAM
from telegraf_llm_input.schema import markdown as schema_table
from telegraf_llm_input.servers.fields import field_servers

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("agent", "host", "discovery", "gpu")

REGIONS: dict[str, dict[str, Callable[[], str]]] = {
    "docs/metrics.md": {"schema": lambda: schema_table(field_servers())},
    "docs/configuration.md": {
        "top": lambda: markdown_table(Config, skip=SECTIONS),
        "agent": lambda: markdown_table(AgentConfig, "agent."),
        "host": lambda: markdown_table(HostConfig, "host."),
        "targets": lambda: markdown_table(TargetConfig, skip=("probe",)),
        "discovery": lambda: markdown_table(DiscoveryConfig, "discovery."),
        "probe": lambda: markdown_table(ProbeConfig, "probe."),
        "gpu": lambda: markdown_table(GpuConfig, "gpu."),
        "logs": lambda: markdown_table(LogConfig),
        "influxdb_v2": lambda: markdown_table(InfluxV2Output, skip=("type",)),
        "influxdb_v1": lambda: markdown_table(InfluxV1Output, skip=("type",)),
        "prometheus": lambda: markdown_table(PrometheusOutput, skip=("type",)),
    },
}
"""Doc file -> the generated regions it must hold."""
FILES: dict[str, Callable[[], str]] = {
    "telegraf_llm_input/sample-config.yaml": sample.render,
    "packaging/systemd/telegraf-llm-input.service": lambda: install.render_unit(install.linux_layout()),
    "packaging/telegraf/telegraf-llm-input.conf": lambda: install.render_dropin(install.linux_layout()),
    "packaging/systemd/telegraf-llm-input-proxy.service": lambda: install.render_proxy_unit(
        install.linux_layout(), install.ProxySetup(DEFAULT_UPSTREAM, DEFAULT_LISTEN)
    ),
    "packaging/launchd/org.telegraf-llm-input.proxy.plist": lambda: install.render_proxy_plist(
        install.macos_layout(Path("/Users/you/.local/telegraf-llm-input"), Path("/Users/you")),
        install.ProxySetup(DEFAULT_UPSTREAM, DEFAULT_LISTEN),
    ).decode(),
}
"""Files generated whole."""
DASHBOARDS = "packaging/grafana/generate.py"
"""Renders the dashboards and alert rules; takes `--check` too."""

_REGION = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated:(?P=name) -->)", re.S)


def fill(text: str, regions: dict[str, Callable[[], str]], where: str = "") -> str:
    """`text` with every generated region rendered again; a region missing or unknown is an error."""
    found = [m.group("name") for m in _REGION.finditer(text)]
    missing, unknown = sorted(set(regions) - set(found)), sorted(set(found) - set(regions))
    if missing or unknown:
        raise ValueError(f"{where}: generated regions missing {missing}, unknown {unknown}")
    return _REGION.sub(lambda m: m.group(1) + regions[m.group("name")]() + m.group(4), text)


def render_all(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file under `root` as it should read."""
    out = {
        root / path: fill((root / path).read_text(encoding="utf-8"), regions, path) for path, regions in REGIONS.items()
    }
    out.update({root / path: render() for path, render in FILES.items()})
    return out


def stale(root: Path = ROOT) -> list[str]:
    """Generated files under `root` that differ from what the code gives (relative paths)."""
    return [
        str(path.relative_to(root))
        for path, text in render_all(root).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telegraf_llm_input.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; list stale files, exit 1 if any")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout (default: %(default)s)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if not all((root / path).exists() for path in REGIONS):
        print(f"{root} is not a checkout of telegraf-llm-input (no {', '.join(REGIONS)}); pass --root", file=sys.stderr)
        return 2
    if args.check:
        bad = stale(root)
        if bad:
            print("stale generated files (run python -m telegraf_llm_input.docs): " + ", ".join(bad))
    else:
        bad = []
        for path, text in render_all(root).items():
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                print(f"wrote {path.relative_to(root)}")
    dashboards = subprocess.run([sys.executable, str(root / DASHBOARDS), *(["--check"] if args.check else [])])
    return 1 if bad or dashboards.returncode else 0
