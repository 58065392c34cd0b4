"""Config loading: types, durations, sizes, env expansion, secrets, and one-line errors naming file and key."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from telegraf_llm_input.config import expand_env, load_config, parse_config, sample_config
from telegraf_llm_input.config.loader import (
    ByteSize,
    ConfigError,
    Duration,
    Secret,
    load_section,
    parse_bytes,
    parse_duration,
)


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("10s", 10.0),
        ("500ms", 0.5),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("2.5s", 2.5),
        ("250us", 0.00025),
        ("100ns", 1e-7),
        ("1d", 86400.0),
        (" 3s ", 3.0),
        ("15", 15.0),
        (15, 15.0),
        (0.25, 0.25),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "10 parsecs", "10x", "-1s", -1, "1s2", True, None, [1], "1m 30s"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "text,size",
    [
        ("8MiB", 8 * 1024**2),
        ("100MB", 100 * 10**6),
        ("512KiB", 512 * 1024),
        ("1GiB", 1024**3),
        ("4096", 4096),
        (4096, 4096),
        ("1.5KiB", 1536),
        ("10 mb", 10**7),
        ("2k", 2000),
        ("7b", 7),
    ],
)
def test_sizes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "-1", -1, "1.5.5MB", "8 parsecs", True, 1.5])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_env_expansion():
    env = {"HOST": "gpu1", "EMPTY": ""}
    data = {
        "a": "${HOST}:8000",
        "b": ["x${MISSING:-def}y", "$${HOST}", "$$$$"],
        "c": {"d": "${EMPTY:-fallback}"},
        "n": 5,
    }
    assert expand_env(data, environ=env) == {"a": "gpu1:8000", "b": ["xdefy", "${HOST}", "$$"], "c": {"d": ""}, "n": 5}


def test_missing_env_var_names_the_key_path():
    with pytest.raises(ConfigError) as err:
        expand_env({"targets": [{"url": "ok"}, {"url": "${NOT_SET_ANYWHERE_42}"}]}, environ={})
    assert err.value.path == "targets[1].url"
    assert "NOT_SET_ANYWHERE_42" in str(err.value)


def test_env_expansion_in_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TLI_TASK", "algorithm_reasoning")
    path = tmp_path / "c.yaml"
    path.write_text("tags:\n  task: ${TLI_TASK}\n  other: ${TLI_UNSET_X:-none}\nagent:\n  hostname: box\n")
    config = load_config(path)
    assert config.global_tags() == {"task": "algorithm_reasoning", "other": "none", "host": "box"}


@dataclass
class Inner:
    size: ByteSize = 1024


@dataclass
class Section:
    name: str
    wait: Duration = 1.0
    token: Secret | None = None
    mode: Literal["a", "b"] = "a"
    count: int = 0
    ratio: float = 0.5
    items: list[int] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    maybe: Duration | None = None


def test_load_section_types():
    s = load_section(
        Section,
        {
            "name": "x",
            "wait": "250ms",
            "mode": "b",
            "count": 3,
            "ratio": 2,
            "items": [1, 2],
            "inner": {"size": "2KiB"},
            "maybe": "1m",
        },
    )
    assert (s.name, s.wait, s.mode, s.count, s.ratio, s.items, s.inner.size, s.maybe) == (
        "x",
        0.25,
        "b",
        3,
        2.0,
        [1, 2],
        2048,
        60.0,
    )


@pytest.mark.parametrize(
    "data,path,problem",
    [
        ({}, "sec.name", "is required"),
        ({"name": "x", "nope": 1}, "sec.nope", "unknown key"),
        ({"name": "x", "count": "3"}, "sec.count", "expected an integer"),
        ({"name": "x", "count": True}, "sec.count", "expected an integer"),
        ({"name": "x", "ratio": "fast"}, "sec.ratio", "expected a number"),
        ({"name": "x", "mode": "c"}, "sec.mode", "must be one of"),
        ({"name": "x", "items": [1, "two"]}, "sec.items[1]", "expected an integer"),
        ({"name": "x", "items": 3}, "sec.items", "expected a list"),
        ({"name": "x", "inner": {"size": "huge"}}, "sec.inner.size", "expected a size"),
        ({"name": "x", "inner": 5}, "sec.inner", "expected a mapping"),
        ({"name": "x", "wait": "soon"}, "sec.wait", "expected a duration"),
        ({"name": "x", "token": "a", "token_file": "/x"}, "sec.token_file", "not both"),
    ],
)
def test_load_section_errors_name_the_key(data, path, problem):
    with pytest.raises(ConfigError) as err:
        load_section(Section, data, "sec")
    assert err.value.path == path
    assert problem in err.value.problem
    assert "\n" not in str(err.value)


def test_secret_from_file(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cr3t\n")
    assert load_section(Section, {"name": "x", "token_file": str(secret)}).token == "s3cr3t"
    with pytest.raises(ConfigError) as err:
        load_section(Section, {"name": "x", "token_file": str(tmp_path / "missing")}, "sec")
    assert err.value.path == "sec.token_file" and "cannot read secret file" in err.value.problem
    with pytest.raises(ConfigError, match="cannot read secret file"):  # unreadable even as root
        load_section(Section, {"name": "x", "token_file": str(tmp_path)}, "sec")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_secret_file(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("x")
    secret.chmod(0)
    with pytest.raises(ConfigError) as err:
        load_section(Section, {"name": "x", "token_file": str(secret)}, "sec")
    assert "Permission denied" in err.value.problem


def test_defaults_and_deadline():
    config = parse_config(None)
    assert config.agent.interval == 10.0 and config.agent.deadline == pytest.approx(8.0)
    assert config.targets is None and config.outputs == [] and config.host.enabled
    assert "host" in config.global_tags()
    config = parse_config({"agent": {"interval": "30s", "gather_timeout": "5s", "omit_hostname": True}})
    assert config.agent.deadline == 5.0 and config.global_tags() == {}


@pytest.mark.parametrize(
    "agent,key",
    [({"interval": 0}, "interval"), ({"gather_timeout": "0s"}, "gather_timeout"), ({"interval": "1ms"}, "interval")],
)
def test_agent_section_checks(agent, key):
    with pytest.raises(ConfigError) as err:
        parse_config({"agent": agent})
    assert err.value.path == f"agent.{key}" and "must be at least 100ms" in err.value.problem


@pytest.mark.parametrize(
    "text,where",
    [
        ("agent:\n  interval: [1\n", "invalid YAML at line"),
        ("agent:\n  intervall: 1s\n", "agent.intervall: unknown key"),
        ("host:\n  enabled: 'yes'\n", "host.enabled: expected true or false"),
        ("agent:\n  interval: 10 parsecs\n", "agent.interval: expected a duration"),
        ("- just\n- a list\n", "expected a mapping"),
        ("targets:\n  - type: vllm\n", "targets[0].url: is required"),
    ],
)
def test_load_config_errors_start_with_the_file(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ")
    assert where in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_sample_config_as_printed_is_the_defaults(tmp_path):
    path = tmp_path / "sample.yaml"
    path.write_text(sample_config())
    assert load_config(path) == parse_config({})  # installed unedited, it changes nothing: discovery on
    assert parse_config({}).targets is None and parse_config({}).discovery.enabled


def test_sample_config_sections_uncommented_are_complete_and_valid(monkeypatch):
    """Removing `# ` from a section's lines (`# name:` and the `#   ...` under it) gives the example it documents
    (the `# --- ... example ---` blocks have tests of their own)."""
    monkeypatch.setenv("INFLUX_TOKEN", "t")
    text = re.sub(r"# --- (\w+) example ---\n.*?# --- end \1 example ---\n", "", sample_config(), flags=re.S)
    out, inside = [], False
    for line in text.splitlines():
        inside = bool(re.fullmatch(r"# [a-z_]+:", line)) or (inside and line.startswith("#   "))
        out.append(line[2:] if inside else line)
    config = parse_config(yaml.safe_load("\n".join(out)))
    assert config.tags.get("task") == "algorithm_reasoning" and config.agent.interval == 10.0
    assert [t.name for t in config.targets or []][:2] == ["vllm-qwen", "llama"]
    assert [o.type for o in config.outputs] == ["stdout", "influxdb_v2", "influxdb_v1", "prometheus"]
