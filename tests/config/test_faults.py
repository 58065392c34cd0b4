"""Config mistakes a user makes, through the command line both ways (`check-config` and a run): one line
`E! config error: FILE: KEY: problem`, exit 2, never a traceback or `E! fatal`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from telegraf_llm_input.config import load_config, parse_config
from telegraf_llm_input.config.loader import ConfigError
from tests.fakes.llm import Snap, fake_vllm, vllm_page
from tests.test_cli import cli

TARGET = "targets:\n  - url: http://127.0.0.1:8000\n"

FAULTS = {
    "same_name_twice": (
        "targets:\n  - url: http://127.0.0.1:8000\n    name: a\n  - url: http://127.0.0.1:8001\n    name: a\n",
        "targets[1].name: target name 'a' is already used by targets[0]",
    ),
    "same_url_twice": (
        "targets:\n  - url: http://127.0.0.1:8000\n  - url: http://127.0.0.1:8000/\n",
        "targets[1].url: target name 'http://127.0.0.1:8000' (the name derived from its url) is already",
    ),
    "name_equals_other_url": (
        "targets:\n  - url: http://127.0.0.1:8000\n  - url: http://127.0.0.1:8001\n    name: http://127.0.0.1:8000\n",
        "targets[1].name: target name",
    ),
    "same_log_twice": ("logs:\n  - path: /tmp/a.log\n  - path: /tmp/a.log\n", "logs[1].path: log name '/tmp/a.log'"),
    "port_out_of_range": (
        "targets:\n  - url: http://127.0.0.1:99999\n",
        "targets[0].url: port must be a number in 1-65535, got 'http://127.0.0.1:99999'",
    ),
    "port_not_a_number": ("targets:\n  - url: http://127.0.0.1:80a\n", "targets[0].url: port must be a number"),
    "port_zero": ("targets:\n  - url: http://127.0.0.1:0\n", "targets[0].url: port must be a number"),
    "bad_ipv6": ('targets:\n  - url: "http://[::1"\n', "targets[0].url: not a valid URL"),
    "credentials_not_echoed": ("targets:\n  - url: http://user:s3cret@127.0.0.1:99999\n", "targets[0].url: port"),
    "url_with_path": (
        "targets:\n  - url: http://127.0.0.1:8000/v1\n",
        "targets[0].url: must be http(s)://host[:port] without a path, got path '/v1'",
    ),
    "url_with_query": ("targets:\n  - url: http://127.0.0.1:8000?x=1\n", "targets[0].url: must not have a query"),
    "timeout_zero": (TARGET + "    timeout: 0\n", "targets[0].timeout: must be at least 100ms, got 0"),
    "interval_1ms": ("agent:\n  interval: 1ms\n", "agent.interval: must be at least 100ms, got '1ms'"),
    "interval_nan": ("agent:\n  interval: .nan\n", "agent.interval: must be a finite duration"),
    "probe_every_tiny": (TARGET + "    probe:\n      every: 10ms\n", "targets[0].probe.every: must be at least 100ms"),
    "flush_interval_zero": (
        "outputs:\n  - type: influxdb_v1\n    flush_interval: 0s\n",
        "outputs[0].flush_interval: must be at least 100ms",
    ),
    "duplicate_yaml_key": (
        "agent:\n  interval: 10s\n  interval: 20s\n",
        "agent.interval: duplicate key (line 3; first given at line 2)",
    ),
    "duplicate_key_in_a_list_item": (
        TARGET + "    type: vllm\n    type: sglang\n",
        "targets[0].type: duplicate key (line 4; first given at line 3)",
    ),
    "listen_not_a_port": (
        "outputs:\n  - type: prometheus\n    listen: localhost:notaport\n",
        "outputs[0].listen: must be host:port with a port in 1-65535, got 'localhost:notaport'",
    ),
    "listen_no_port": (
        "outputs:\n  - type: prometheus\n    listen: localhost\n",
        "outputs[0].listen: must be host:port",
    ),
    "influx_bad_port": (
        "outputs:\n  - type: influxdb_v1\n    url: http://127.0.0.1:86086\n",
        "outputs[0].url: port must be a number",
    ),
    **{
        f"buffer_max_mb_{name}": (
            f"outputs:\n  - type: influxdb_v1\n    buffer_max_mb: {value}\n",
            f"outputs[0].buffer_max_mb: {problem}",
        )
        for name, value, problem in (
            ("nan", ".nan", "must be a finite number, got nan"),
            ("inf", ".inf", "must be a finite number, got inf"),
            ("negative", "-5", "must be over 0 and at most 1000000 (1 TB), got -5"),
            ("zero", "0", "must be over 0 and at most 1000000 (1 TB), got 0"),
        )
    },
    "interval_over_a_week": ("agent:\n  interval: 8d\n", "agent.interval: must be at most 7d (a week), got '8d'"),
    "expire_huge_number": (
        "outputs:\n  - type: prometheus\n    expire: 1.0e+300\n",
        "outputs[0].expire: must be at most 7d (a week), got 1e+300",
    ),
    "flush_interval_integer_too_big_for_a_float": (
        "outputs:\n  - type: influxdb_v2\n    bucket: b\n    flush_interval: 1" + "0" * 400 + "\n",
        "outputs[0].flush_interval: must be a finite duration",
    ),
    "influxdb_v2_empty_org": (
        "outputs:\n  - type: influxdb_v2\n    bucket: b\n    org: ''\n",
        "outputs[0].org: must not be empty",
    ),
    "secret_yes": (
        "outputs:\n  - type: influxdb_v1\n    username: admin\n    password: yes\n",
        "outputs[0].password: YAML read this secret as true or false: put it in quotes, or use `password_file`; "
        "the value is not shown",
    ),
    "secret_a_list": (
        TARGET + "    bearer_token: [s3cr3tpw]\n",
        "targets[0].bearer_token: YAML read this secret as a list: put it in quotes, or use `bearer_token_file`",
    ),
    "header_name_with_a_space": (
        TARGET + "    headers:\n      X Api Key: abc\n",
        "targets[0].headers.X Api Key: not a valid HTTP header name",
    ),
    "header_value_with_crlf": (
        TARGET + '    headers:\n      X-Api-Key: "s3cr3tpw\\r\\nX-Other: 1"\n',
        "targets[0].headers.X-Api-Key: the value has a CR, LF or other control character (value not shown)",
    ),
    "header_value_not_ascii": (
        TARGET + '    headers:\n      X-Api-Key: "s3cr3tpw\u20ac"\n',
        "targets[0].headers.X-Api-Key: the value has a character outside ASCII (value not shown)",
    ),
    "header_value_trailing_space": (
        TARGET + '    headers:\n      X-Api-Key: "s3cr3tpw "\n',
        "targets[0].headers.X-Api-Key: the value starts or ends with a space or tab (value not shown)",
    ),
    "header_value_yes": (
        TARGET + "    headers:\n      X-Debug: yes\n",
        "targets[0].headers.X-Debug: YAML read this as true (yes/no/on/off/true/false): put it in quotes",
    ),
    "tag_value_off": ("tags:\n  gpu: off\n", "tags.gpu: YAML read this as false (yes/no/on/off/true/false): put it"),
    "max_models_zero": (TARGET + "    max_models: 0\n", "targets[0].max_models: must be at least 1"),
    "discovery_port_zero": ("discovery:\n  ports: [0]\n", "discovery.ports: must be 1-65535, got 0"),
}


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("case", sorted(FAULTS))
def test_a_config_mistake_is_one_line_naming_the_key_and_exit_2(tmp_path, case, command):
    text, problem = FAULTS[case]
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    args = ["check-config", "--config", str(path)] if command == "check-config" else ["--config", str(path), "--once"]
    proc = cli(*args, input=b"")
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    [line] = stderr.splitlines()
    assert line.startswith(f"E! config error: {path}: {problem}"), stderr
    assert "s3cret" not in stderr and "s3cr3tpw" not in stderr and proc.stdout == b""
    if case.startswith("secret_"):
        problem_text = line[len(f"E! config error: {path}: ") :]
        assert not any(written in problem_text for written in ("yes", "s3cr3tpw")), line


def test_the_same_checks_hold_without_a_file():
    """A config built in code (tests, embedding) goes through the same validation."""
    with pytest.raises(ConfigError) as err:
        parse_config({"targets": [{"url": "http://127.0.0.1:8000"}, {"url": "http://127.0.0.1:8000"}]})
    assert err.value.path == "targets[1].url"


def test_distinct_names_on_one_url_and_base_urls_are_fine():
    config = parse_config(
        {
            "targets": [
                {"url": "http://127.0.0.1:8000", "name": "a"},
                {"url": "http://127.0.0.1:8000", "name": "b", "type": "openai"},
                {"url": "https://[::1]:8443/"},
            ],
            "outputs": [
                {"type": "prometheus", "listen": "[::1]:9273"},
                {"type": "influxdb_v1", "url": "https://proxy.example/influx"},
            ],
            "agent": {"interval": "100ms"},
        }
    )
    assert [t.display_name for t in config.targets] == ["a", "b", "https://[::1]:8443"]
    assert config.agent.interval == pytest.approx(0.1)


def test_interval_flag_is_checked_like_the_config(tmp_path):
    proc = cli("--interval", "1ms", "--once", input=b"")
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == ["E! config error: --interval: must be at least 100ms, got '1ms'"]


BOMB = "".join(  # 272 bytes that YAML reads as 9**7 (4.8 million) strings
    f"{name}: &{name} [{','.join([inner] * 9)}]\n"
    for name, inner in zip("abcdefg", ['"lol"', "*a", "*b", "*c", "*d", "*e", "*f"])
)
HOSTILE = {
    "deep_nesting": ("[" * 1000, "nested deeper than 32 levels at line 1"),
    "deep_mapping": ("".join("  " * i + f"k{i}:\n" for i in range(200)), "nested deeper than 32 levels"),
    "deep_through_aliases": (
        "a: &a " + "[" * 20 + "]" * 20 + "\nb: &b [" + ", ".join(["*a"] * 2) + "]\nc: [[[[[[[[[[[[*b]]]]]]]]]]]]\n",
        "nested deeper than 32 levels at line 3 (aliases expanded)",
    ),
    "alias_bomb": (BOMB, "more than 100000 values once aliases are expanded"),
    "ten_megabytes": ("tags:\n" + "".join(f"  k{i}: {'v' * 90}\n" for i in range(100_000)), "larger than 256 KiB"),
    "integer_of_5000_digits": ("agent:\n  interval: " + "9" * 5000 + "\n", "invalid YAML"),
}


PEAK_OF_CHILD = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)
"""Runs argv[2:] and writes its peak RSS (KiB) to argv[1]; exits with its status."""


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_config_is_one_line_exit_2_and_bounded_memory(tmp_path, case, command):
    """Deep nesting was a RecursionError traceback; the alias bomb took 36 s and 1.2 GB; 10 MB took 35 s and
    422 MB. Each is refused before it is expanded: one line, exit 2, and the process stays small."""
    text, problem = HOSTILE[case]
    if case == "alias_bomb":
        assert len(text) < 300
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    args = ["check-config", "--config", str(path)] if command == "check-config" else ["--config", str(path), "--once"]
    out, err, peak = tmp_path / "stdout", tmp_path / "stderr", tmp_path / "peak"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        # Started by a small launcher that reports its child's ru_maxrss: a child forked (vforked) by this big
        # test process would inherit this process's high-water mark at exec, and read as large as the suite.
        proc = subprocess.Popen(
            [sys.executable, "-c", PEAK_OF_CHILD, str(peak), sys.executable, "-m", "telegraf_llm_input", *args],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            returncode = proc.wait(60)  # a hang fails the test, never the suite
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    stderr_text, peak_mib = err.read_text(), int(peak.read_text()) / 1024
    assert returncode == 2, stderr_text[-2000:]
    [line] = stderr_text.splitlines()
    assert line.startswith(f"E! config error: {path}: ") and problem in line, line
    assert out.read_bytes() == b""
    assert peak_mib < 150, f"{peak_mib:.0f} MiB"


def test_anchors_and_merge_keys_still_work(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(
        "targets:\n"
        "  - &base {url: 'http://127.0.0.1:8000', timeout: 5s, name: a, tags: {team: x}}\n"
        "  - <<: *base\n"
        "    name: b\n"
    )
    config = load_config(path)
    assert [(t.name, t.timeout, t.tags) for t in config.targets] == [
        ("a", 5.0, {"team": "x"}),
        ("b", 5.0, {"team": "x"}),
    ]


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("kind", ["fifo_nobody_writes_to", "directory", "dev_zero"])
def test_a_config_path_that_is_no_file_is_one_line_exit_2_not_a_hang(tmp_path, kind, command):
    """`open()` on a FIFO with no writer blocked forever; each is now one line and exit 2."""
    if kind == "fifo_nobody_writes_to":
        path, problem = tmp_path / "agent.yaml", "not a regular file and nothing came from it in 5 s (no writer?)"
        os.mkfifo(path)
    elif kind == "directory":
        path, problem = tmp_path, "a directory, not a config file"
    else:
        path, problem = "/dev/zero", "larger than 256 KiB: not a config file"
    args = ["check-config", "--config", str(path)] if command == "check-config" else ["--config", str(path), "--once"]
    proc = cli(*args, input=b"")  # a hang fails on cli's timeout
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.decode().splitlines() == [f"E! config error: {path}: {problem}"]


def test_a_config_from_a_pipe_that_is_written_still_works(tmp_path):
    """`--config <(envsubst < agent.yaml)`: a pipe with a writer, read as before."""
    path = tmp_path / "agent.yaml"
    os.mkfifo(path)
    writer = threading.Thread(target=lambda: path.write_text("agent:\n  interval: 5s\ntargets: []\n"))
    writer.start()
    proc = cli("check-config", "--config", str(path))
    writer.join()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith("config OK")


def test_header_values_tags_and_secrets_are_sent_as_written(tmp_path):
    """YAML 1.1 reads `0123` as the octal 83, `1_000` as 1000, `1.10` as 1.1 and `1:30` as 90: a header, a tag or
    a secret (a token, a password) gets the text."""
    with fake_vllm(vllm_page({"m": Snap(running=1)})) as server:
        path = tmp_path / "agent.yaml"
        path.write_text(
            f"targets:\n  - url: {server.url}\n    type: vllm\n    name: v\n    bearer_token: 1:30\n"
            "    headers:\n      X-Key: 0123\n      X-Count: 1_000\n      X-Version: 1.10\n      X-Hex: 0x1F\n"
            "tags:\n  rack: 012\n"
        )
        proc = cli("--config", str(path), "--once")
        assert proc.returncode == 0, proc.stderr
        sent = [r.headers for r in server.requests if r.path == "/metrics"]
    assert sent and all(
        (h["X-Key"], h["X-Count"], h["X-Version"], h["X-Hex"]) == ("0123", "1_000", "1.10", "0x1F") for h in sent
    )
    assert all(h["Authorization"] == "Bearer 1:30" for h in sent)
    assert "rack=012" in proc.stdout.decode() and "rack=10" not in proc.stdout.decode()


def test_a_secret_yaml_reads_as_a_number_is_taken_as_written(tmp_path):
    """`password: 0123` is the password 0123 (not 83, not refused), as any string setting takes a YAML number."""
    path = tmp_path / "agent.yaml"
    path.write_text(
        "outputs:\n  - type: influxdb_v1\n    username: admin\n    password: 0123\n"
        "  - type: influxdb_v2\n    bucket: b\n    org: o\n    token: 1_000.50\n"
    )
    v1, v2 = load_config(path).outputs
    assert (v1.password, v2.token) == ("0123", "1_000.50")
