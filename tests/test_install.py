"""`install-service` into a temporary root, as CI runs it (the suite runs as root): the files it writes work.

The unit passes `systemd-analyze verify` with this install's real binary in ExecStart; the drop-in is TOML with
the keys Telegraf's execd reads; the config is the defaults and passes check-config; the launchd job points only
at paths the install made, and keeps no unbounded log.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from telegraf_llm_input.config import load_config, parse_config
from telegraf_llm_input.install import ProxySetup, install, linux_layout, macos_layout, stage

tomllib = pytest.importorskip("tomllib")
BINARY = Path(sys.prefix) / "bin" / "telegraf-llm-input"


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "telegraf_llm_input", *args], capture_output=True, text=True, timeout=120, **kw
    )


def test_linux_files_into_a_temp_root(tmp_path):
    r = cli("install-service", "--root", str(tmp_path), "--prefix", sys.prefix, "--platform", "linux")
    assert r.returncode == 0, r.stderr
    layout = linux_layout(Path(sys.prefix))
    unit = stage(tmp_path, layout.service)
    dropin = stage(tmp_path, layout.telegraf_dir / "telegraf-llm-input.conf")
    config = stage(tmp_path, layout.config)
    link = stage(tmp_path, layout.link)
    for path in (unit, dropin, config):
        assert str(path) in r.stdout and path.stat().st_mode & 0o777 == 0o644
    assert link.is_symlink() and Path(os.readlink(link)) == BINARY and BINARY.exists()

    # the unit runs this install's binary with this config, and systemd accepts it
    text = unit.read_text()
    assert f"ExecStart={BINARY} --config /etc/telegraf-llm-input/config.yaml --signal none" in text
    assert "AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH" in text and "DynamicUser=yes" in text
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    v = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert [line for line in (v.stdout + v.stderr).splitlines() if unit.name in line] == []

    # the drop-in: what Telegraf's execd reads
    (block,) = tomllib.loads(dropin.read_text())["inputs"]["execd"]
    assert block["command"] == [str(BINARY), "--signal", "stdin", "--config", "/etc/telegraf-llm-input/config.yaml"]
    assert block["signal"] == "STDIN" and block["data_format"] == "influx" and block["restart_delay"] == "10s"
    assert block["interval"] == "10s"

    # the config IS the defaults: discovery on, no targets, no tags
    assert load_config(config) == parse_config({})
    check = cli("check-config", "--config", str(config))
    assert check.returncode == 0 and "discovery" in check.stdout, check.stderr


def test_an_edited_config_is_kept_unless_forced(tmp_path):
    layout = linux_layout(Path(sys.prefix))
    install(layout, tmp_path)
    config = stage(tmp_path, layout.config)
    config.write_text("tags: {site: a}\n")
    again = install(layout, tmp_path)
    assert config.read_text() == "tags: {site: a}\n" and any(w.kept and w.path == config for w in again)
    install(layout, tmp_path, force=True)
    assert load_config(config) == parse_config({})


def test_macos_launch_agent_points_only_at_what_the_install_made(tmp_path):
    home, prefix = Path("/Users/me"), Path("/Users/me/.local/telegraf-llm-input")
    layout = macos_layout(prefix, home)
    written = install(layout, tmp_path)
    plist = stage(tmp_path, layout.service)
    job = plistlib.loads(plist.read_bytes())
    assert plist == tmp_path / "Users/me/Library/LaunchAgents/org.telegraf-llm-input.agent.plist"
    assert job["Label"] == plist.stem and "UserName" not in job  # the user's own: sees their model servers
    args = job["ProgramArguments"]
    assert args == [str(prefix / "bin/telegraf-llm-input"), "--config", str(layout.config), "--signal", "none"]
    # every path the job names is made by the install (config, log) or by the venv (the binary's prefix)
    assert stage(tmp_path, layout.config).is_file() and stage(tmp_path, Path(job["StandardErrorPath"])).is_file()
    assert Path(args[0]).parent.parent == prefix == Path(job["WorkingDirectory"])
    # with no output configured stdout carries the metrics: discarded, never a file that grows without bound
    assert job["StandardOutPath"] == "/dev/null" and job["StandardErrorPath"] != job["StandardOutPath"]
    assert job["KeepAlive"] == {"SuccessfulExit": False} and job["ThrottleInterval"] >= 5
    assert job["Umask"] == 0o077 and job["ProcessType"] == "Background"
    assert {"/usr/sbin", "/usr/bin"} <= set(job["EnvironmentVariables"]["PATH"].split(":"))  # lsof, ioreg
    link = stage(tmp_path, layout.link)
    assert link == tmp_path / "Users/me/.local/bin/telegraf-llm-input" and Path(os.readlink(link)) == Path(args[0])
    assert {w.what for w in written} >= {"launchd job (LaunchAgent)", "Telegraf execd drop-in", "log (stderr only)"}


def test_the_launch_agent_command_line_is_accepted_by_the_agent(tmp_path):
    layout = macos_layout(Path(sys.prefix), tmp_path / "home")
    install(layout, tmp_path)
    args = plistlib.loads(stage(tmp_path, layout.service).read_bytes())["ProgramArguments"]
    args[args.index("--config") + 1] = str(stage(tmp_path, layout.config))
    r = subprocess.run([*args, "check-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_without_the_right_to_write_it_says_how():
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(BINARY), "install-service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "Permission denied" in r.stderr and "run it as root, or stage the files with --root DIR" in r.stderr


def test_with_proxy_the_proxys_unit_runs_this_install_with_the_given_upstream(tmp_path):
    upstream, listen = "http://127.0.0.1:11435", "127.0.0.1:11434"  # the proxy on Ollama's port, Ollama moved
    r = cli("install-service", "--root", str(tmp_path), "--prefix", sys.prefix, "--platform", "linux",
            "--proxy", "--upstream", upstream, "--listen", listen)  # fmt: skip
    assert r.returncode == 0, r.stderr
    layout = linux_layout(Path(sys.prefix))
    unit = stage(tmp_path, layout.proxy_service)
    assert unit.name == "telegraf-llm-input-proxy.service" and str(unit) in r.stdout
    assert stage(tmp_path, layout.service).is_file()  # the agent's unit as before
    text = unit.read_text()
    (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    binary, *argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert binary == str(BINARY) and argv == ["proxy", "--upstream", upstream, "--listen", listen]
    assert "Restart=always" in text and "DynamicUser=yes" in text
    assert "enable --now telegraf-llm-input-proxy" in r.stdout
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    v = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert [line for line in (v.stdout + v.stderr).splitlines() if unit.name in line] == []
    # the command line the unit runs is one the proxy accepts (it exits 2 on a bad one before listening)
    check = subprocess.run([binary, *argv, "--timeout", "bogus"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 2 and "--timeout" in check.stderr and "--upstream" not in check.stderr


def test_with_proxy_and_without_its_extra_the_first_step_says_what_to_install(tmp_path):
    block = "import sys; sys.modules['httptools'] = None"
    argv = ["install-service", "--root", str(tmp_path), "--prefix", sys.prefix, "--platform", "linux", "--proxy"]
    code = f"{block}; from telegraf_llm_input.cli import main; sys.exit(main({argv!r}))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pip = f"{Path(sys.prefix) / 'bin' / 'pip'} install 'telegraf-llm-input[proxy]'"
    assert pip in r.stdout and r.stdout.index(pip) < r.stdout.index("enable --now telegraf-llm-input-proxy")
    installed = cli("install-service", "--root", str(tmp_path / "b"), "--prefix", sys.prefix, "--platform", "linux",
                    "--proxy")  # fmt: skip
    assert "[proxy]" not in installed.stdout  # with the extra there, no such step


def test_without_proxy_no_proxy_unit_and_a_bad_upstream_is_one_line(tmp_path):
    assert cli("install-service", "--root", str(tmp_path), "--platform", "linux").returncode == 0
    assert not stage(tmp_path, linux_layout().proxy_service).exists()
    bad = cli("install-service", "--root", str(tmp_path / "b"), "--proxy", "--upstream", "ftp://x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--upstream" in bad.stderr
    assert not (tmp_path / "b").exists()  # nothing written
    alone = cli("install-service", "--root", str(tmp_path / "c"), "--upstream", "http://127.0.0.1:1")
    assert alone.returncode == 2 and "--proxy" in alone.stderr


def test_with_proxy_on_macos_the_proxys_job_points_only_at_what_the_install_made(tmp_path):
    home, prefix = Path("/Users/me"), Path("/Users/me/.local/telegraf-llm-input")
    layout = macos_layout(prefix, home)
    install(layout, tmp_path, proxy=ProxySetup("http://127.0.0.1:1234", "127.0.0.1:8434"))  # LM Studio
    plist = stage(tmp_path, layout.proxy_service)
    job = plistlib.loads(plist.read_bytes())
    assert plist.name == "org.telegraf-llm-input.proxy.plist" and job["Label"] == plist.stem
    assert job["ProgramArguments"] == [str(prefix / "bin/telegraf-llm-input"), "proxy", "--upstream",
                                       "http://127.0.0.1:1234", "--listen", "127.0.0.1:8434"]  # fmt: skip
    assert job["KeepAlive"] is True and job["Umask"] == 0o077
    assert stage(tmp_path, Path(job["StandardErrorPath"])).is_file()
    assert job["StandardErrorPath"] != str(layout.log)  # its own log, not the agent's
