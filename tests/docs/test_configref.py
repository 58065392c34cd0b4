"""Config reference: every key documented, defaults written the way the config parser reads them back."""

from __future__ import annotations

import dataclasses

import pytest

from telegraf_llm_input.config import AgentConfig, Config
from telegraf_llm_input.config.gpu import GpuConfig
from telegraf_llm_input.config.host import HostConfig
from telegraf_llm_input.config.loader import parse_bytes, parse_duration
from telegraf_llm_input.config.outputs import InfluxV1Output, InfluxV2Output, PrometheusOutput
from telegraf_llm_input.config.probe import ProbeConfig
from telegraf_llm_input.config.requestlog import LogConfig
from telegraf_llm_input.config.targets import DiscoveryConfig, TargetConfig
from telegraf_llm_input.docs import configref
from telegraf_llm_input.docs.generate import REGIONS

SECTIONS = (
    AgentConfig,
    HostConfig,
    TargetConfig,
    ProbeConfig,
    DiscoveryConfig,
    GpuConfig,
    LogConfig,
    InfluxV2Output,
    InfluxV1Output,
    PrometheusOutput,
)


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.__name__)
def test_every_key_has_a_meaning(cls):
    undocumented = [k.key for k in configref.keys(cls) if not k.meaning and k.key != "type"]
    assert undocumented == [], f"give these fields of {cls.__name__} an attribute docstring"


def test_every_top_level_section_is_in_the_reference():
    tables = REGIONS["docs/configuration.md"]
    for f in dataclasses.fields(Config):
        assert f.name in tables or f.name in {"tags", "targets", "logs", "outputs"}, f.name


@pytest.mark.parametrize("seconds", [0.5, 0.25, 1.0, 10.0, 60.0, 120.0, 300.0, 5400.0, 3600.0, 86400.0, 90061.0])
def test_durations_read_back(seconds):
    assert parse_duration(configref.format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("size", [1, 1000, 1024, 8 * 1024**2, 16 * 1024**2, 3 * 1024**3, 1536])
def test_sizes_read_back(size):
    assert parse_bytes(configref.format_bytes(size)) == size


def test_table_row_from_the_dataclass():
    rows = configref.markdown_table(TargetConfig, skip=("probe",)).splitlines()
    assert any(r.startswith("| `timeout` | duration | `3s` | ") for r in rows)
    assert any(r.startswith("| `bearer_token` / `bearer_token_file` | secret | none |") for r in rows)
    assert any(r.startswith("| `name` | string | the URL without credentials | The `target` tag") for r in rows)
    assert any(r.startswith("| `json_fields.<name>.kind` | `gauge` \\| `counter` | `gauge` |") for r in rows)
    assert any(r.startswith("| `url` | string | required |") for r in rows)


def test_yaml_key_spelt_from_metadata():
    assert "from" in [k.key for k in configref.keys(LogConfig)]
