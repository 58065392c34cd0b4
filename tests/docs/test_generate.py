"""The one generator: docs tables, config reference, sample config (and the dashboards) match the code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from telegraf_llm_input.config import AgentConfig, parse_config, sample_config
from telegraf_llm_input.config.gpu import GpuConfig
from telegraf_llm_input.config.host import HostConfig
from telegraf_llm_input.config.targets import DiscoveryConfig
from telegraf_llm_input.docs import generate

ROOT = Path(__file__).resolve().parents[2]


def test_generated_files_are_current():
    proc = subprocess.run(
        [sys.executable, "-m", "telegraf_llm_input.docs", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + "\nrun: python -m telegraf_llm_input.docs"


def _copy(tmp_path: Path) -> Path:
    for path in [*generate.REGIONS, *generate.FILES]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    return tmp_path


def test_check_names_each_stale_file_and_writing_fixes_it(tmp_path):
    root = _copy(tmp_path)
    assert generate.stale(root) == []
    metrics = root / "docs" / "metrics.md"
    metrics.write_text(metrics.read_text().replace("| `up` | int |", "| `up` | float |", 1))
    config = root / "docs" / "configuration.md"
    config.write_text(
        config.read_text().replace("| `agent.interval` | duration | `10s` |", "| `agent.interval` | duration | `15s` |")
    )
    (root / "telegraf_llm_input" / "sample-config.yaml").unlink()
    assert generate.stale(root) == ["docs/metrics.md", "docs/configuration.md", "telegraf_llm_input/sample-config.yaml"]
    for path, text in generate.render_all(root).items():
        path.write_text(text)
    assert generate.stale(root) == []
    assert (root / "docs" / "metrics.md").read_text() == (ROOT / "docs" / "metrics.md").read_text()


def test_a_doc_that_lost_a_generated_region_is_an_error(tmp_path):
    root = _copy(tmp_path)
    config = root / "docs" / "configuration.md"
    config.write_text(config.read_text().replace("<!-- generated:probe -->", "<!-- probe -->"))
    with pytest.raises(ValueError, match=r"docs/configuration.md: generated regions missing \['probe'\]"):
        generate.render_all(root)


def test_the_sample_configs_sections_hold_the_codes_defaults():
    config = parse_config(yaml.safe_load(sample_config()))
    assert config.agent == AgentConfig()
    assert config.host == HostConfig()
    assert config.discovery == DiscoveryConfig()
    assert config.gpu == GpuConfig()


def test_the_metrics_doc_is_the_schema_table():
    from telegraf_llm_input.schema import markdown
    from telegraf_llm_input.servers.fields import field_servers

    assert markdown(field_servers()) in (ROOT / "docs" / "metrics.md").read_text()
