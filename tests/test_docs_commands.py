"""The install commands of README.md, docs/deploy.md and docs/macos.md, run as written in a fresh clone.

Each `<!-- commands: NAME -->` block is run by bash in that order, with only what a test must change, listed in
`rewrite`: the clone comes from this repository, absolute paths move under a temporary root (the venv at
<root>/opt/telegraf-llm-input, the files of `install-service --root <root>`), `apt-get` is left to CI
(scripts/test.sh installs the packages), and systemd's start (no systemd runs here) becomes `systemd-analyze
verify` of the unit plus its ExecStart run for a few gathers. The metrics of that run must reach the real
VictoriaMetrics (the documented influxdb_v2 output, through its v2 write API) and the real InfluxDB 1.x (the
documented `influxdb_v1` alternative). The macOS block runs as a user created here, in a temporary home.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.support.influxdb import InfluxDB1, influxd_binary
from tests.support.procs import wait_until
from tests.support.victoria import VictoriaMetrics, victoria_binary

REPO = Path(__file__).resolve().parent.parent
CLONE_URL = "https://github.com/telegraf-llm-input/telegraf-llm-input"
BLOCK = re.compile(r"<!-- commands: (?P<name>\w+)[^>]*-->\n```sh\n(?P<body>.*?)```", re.S)
USER = "llmdocs"


def blocks(doc: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer((REPO / doc).read_text())}


def rewrite(script: str, root: Path) -> str:
    """The documented commands with the test's changes (and only those)."""
    out = []
    for line in script.splitlines():
        if line.startswith("apt-get install"):
            continue  # CI installs the Debian packages (scripts/test.sh APT_PACKAGES)
        line = re.sub(r"(?<![\w.~])/(opt|etc|usr/local|var/lib|tmp)/", rf"{root}/\1/", line)
        # after the paths: this checkout may itself live under /tmp (CI clones into `mktemp -d`)
        line = line.replace(CLONE_URL, f"{shlex.quote(str(REPO))} telegraf-llm-input")  # the name the URL gives
        line = line.replace("install-service", f"install-service --root {root}")
        if line.startswith("systemctl daemon-reload"):
            line = f"systemd-analyze verify --man=no {root}/etc/systemd/system/telegraf-llm-input.service"
        if line.startswith("systemctl enable --now"):
            continue  # the test runs ExecStart itself
        out.append(line)
    return "\n".join(out) + "\n"


def bash(script: str, cwd: Path, env: dict, user: str | None = None) -> str:
    argv = ["bash", "-euo", "pipefail", "-c", script]
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{script}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.fixture
def databases(tmp_path):
    if victoria_binary() is None or influxd_binary() is None:
        pytest.skip("victoria-metrics and influxdb (Debian packages) are needed")
    vm = VictoriaMetrics(tmp_path / "vm").start()
    influx = InfluxDB1(tmp_path / "influx").start()
    yield vm, influx
    vm.stop()
    influx.stop()


@pytest.mark.realserver
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("git"), reason="runs the root commands; needs git")
def test_readme_then_deploy_commands_give_an_agent_whose_metrics_reach_the_databases(tmp_path, databases):
    vm, influx = databases
    root = tmp_path / "root"
    env = {**os.environ, "PATH": f"{root}/usr/local/bin:{os.environ['PATH']}", "HOME": str(tmp_path)}
    env.pop("VIRTUAL_ENV", None)
    readme, deploy = blocks("README.md"), blocks("docs/deploy.md")
    (tmp_path / "a").mkdir()
    out = bash(rewrite(readme["install"], root), tmp_path / "a", env)
    assert "config OK" in out and "model servers" in out  # check-config, then doctor's screen
    (tmp_path / "b").mkdir()
    bash(rewrite(deploy["install"], root), tmp_path / "b", env)
    standalone = rewrite(deploy["standalone"], root).replace("http://127.0.0.1:8086", vm.url)
    (root / "var/lib/telegraf-llm-input").mkdir(parents=True)  # systemd's StateDirectory=
    assert "config OK" in bash(standalone, tmp_path / "b", env)

    unit = (root / "etc/systemd/system/telegraf-llm-input.service").read_text()
    exec_start = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))
    assert exec_start[0] == f"{root}/opt/telegraf-llm-input/bin/telegraf-llm-input"
    config_path = root / "etc/telegraf-llm-input/config.yaml"
    assert exec_start[exec_start.index("--config") + 1] == "/etc/telegraf-llm-input/config.yaml"
    exec_start[exec_start.index("--config") + 1] = str(config_path)
    config = yaml.safe_load(config_path.read_text())  # the documented InfluxDB 1.x output beside the v2 one
    config["outputs"].append({"type": "influxdb_v1", "url": influx.url, "database": "llm"})
    config["agent"]["interval"] = "1s"
    config["targets"] = []
    influx.create_db("llm")
    config_path.write_text(yaml.safe_dump(config))
    service_env = dict(line.split("=", 1) for line in (root / "etc/telegraf-llm-input/env").read_text().split())
    agent = subprocess.Popen(
        exec_start,
        env={**env, **service_env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not influx.query("SELECT count(*) FROM llm_host", db="llm")["results"][
            0
        ].get("series"):
            time.sleep(0.5)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    assert influx.query("SELECT count(*) FROM llm_host", db="llm")["results"][0].get("series"), err
    # The first gather is sent at once (before the database is proven up), so the agent may stop a second
    # after it: VictoriaMetrics makes a new series searchable a moment after taking it.
    wait_until(lambda: bool(vm.export('{__name__=~"llm_host_.*"}')), 30, f"llm_host in VictoriaMetrics: {err}")


@pytest.mark.realserver
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("git"), reason="runs the root commands; needs git")
def test_wheel_commands_install_a_wheel_that_needs_no_source_tree(tmp_path):
    root = tmp_path / "root"
    env = {**os.environ, "PATH": f"{root}/usr/local/bin:{os.environ['PATH']}", "HOME": str(tmp_path)}
    env.pop("VIRTUAL_ENV", None)
    clone = tmp_path / "telegraf-llm-input"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    out = bash(rewrite(blocks("docs/deploy.md")["wheel"], root), clone, env)
    (wheel,) = (clone / "dist").glob("telegraf_llm_input-*.whl")
    shutil.rmtree(clone)  # what install-service writes comes from the installed wheel alone
    assert "wrote" in out and (root / "etc/telegraf-llm-input/config.yaml").is_file()
    assert "Successfully built" in out and "deprecated" not in out.lower(), out  # setuptools: a `license` table
    check = subprocess.run(
        ["telegraf-llm-input", "check-config", "--config", str(root / "etc/telegraf-llm-input/config.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and "discovery" in check.stdout, check.stderr
    assert wheel.name.endswith("-py3-none-any.whl")


@pytest.mark.realserver
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"), reason="creates a user to run them as")
def test_macos_commands_as_a_user_into_their_home():
    top = Path(tempfile.mkdtemp(prefix="llmdocs-"))  # pytest's tmp_path sits in root's 0700 directory
    top.chmod(0o755)
    home = top / "home"
    subprocess.run(["useradd", "--home-dir", str(home), "--create-home", "--shell", "/bin/bash", USER], check=True)
    try:
        script = blocks("docs/macos.md")["macos"].replace(CLONE_URL, f"{shlex.quote(str(REPO))} telegraf-llm-input")
        script = script.replace("install-service", "install-service --platform macos")  # this is Linux
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
        # the repository is root's: git lets the user clone it only when the user's config says it is safe
        (home / ".gitconfig").write_text(f"[safe]\n\tdirectory = {REPO}\n\tdirectory = *\n")
        out = bash(script, home, env, user=USER)
        assert "llm_host," in out and "model servers" in out
        plist = home / "Library/LaunchAgents/org.telegraf-llm-input.agent.plist"
        assert plist.is_file() and (home / ".local/telegraf-llm-input/var/log/telegraf-llm-input.log").is_file()
        assert (
            home / ".local/bin/telegraf-llm-input"
        ).resolve() == home / ".local/telegraf-llm-input/bin/telegraf-llm-input"
    finally:
        subprocess.run(["userdel", "--remove", USER], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)
