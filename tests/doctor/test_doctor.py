"""`doctor` as a user runs it: against the fakes, the real llama-server, the real InfluxDB, and as an unprivileged
user (created here) against a root-owned server: it names each blocked check with its fix, and its exit status
follows (0 when everything configured can work, 1 when something cannot)."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from telegraf_llm_input.install import install, linux_layout, render_dropin
from tests.fakes.llm import fake_llamacpp, fake_ollama, llamacpp_metrics
from tests.realserver.conftest import llama_binary, make_llama_server, tiny_model  # noqa: F401  (fixtures)
from tests.sources.test_gpu_backends import MIXED
from tests.support.influxdb import InfluxDB1, influxd_binary
from tests.support.procs import free_port

USER = "llmdoctor"
ROOT = os.geteuid() == 0
BINARY = Path(sys.prefix) / "bin" / "telegraf-llm-input"


def doctor(config: str, *args: str, user: str | None = None, caps: str | None = None, env: dict | None = None):
    """`telegraf-llm-input doctor --config -` (the config on stdin: a test's temp dir is root's alone)."""
    prefix: list[str] = []
    if user or caps:
        prefix = ["setpriv", f"--reuid={user or USER}", f"--regid={user or USER}", "--init-groups"]
    if caps:
        prefix += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
    r = subprocess.run(
        [*prefix, str(BINARY), "doctor", "--config", "-", *args],
        input=config,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return r.returncode, r.stdout, r.stderr


def lines(out: str, mark: str) -> list[str]:
    return [line.strip()[4:] for line in out.splitlines() if line.strip().startswith(mark)]


def fixes(out: str) -> list[str]:
    return [line.strip()[5:] for line in out.splitlines() if line.strip().startswith("fix: ")]


@pytest.fixture(scope="module")
def unprivileged_user():
    if not ROOT or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("needs root, useradd and setpriv to run doctor as another user")
    created = subprocess.run(["id", USER], capture_output=True).returncode != 0
    if created:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
    yield pwd.getpwnam(USER)
    if created:
        subprocess.run(["userdel", USER], check=False)


def test_fakes_as_root_servers_processes_outputs_and_exit_status():
    ollama = fake_ollama([]).start()
    llama = fake_llamacpp(llamacpp_metrics(10, 20, 0.5, 1.0)).start()
    down, prom = free_port(), free_port()
    try:
        config = {
            "targets": [
                # the fakes write no server log (test_a_server_whose_log_is_nowhere_to_be_found...): `log: none`
                {"url": ollama.url, "type": "auto", "name": "ollama", "log": "none"},
                {"url": llama.url, "type": "llamacpp", "name": "llama", "log": "none"},
            ],
            "outputs": [{"type": "prometheus", "listen": f"127.0.0.1:{prom}"}],
            "host": {"enabled": False},
        }
        code, out, err = doctor(json.dumps(config))
        assert code == 0, out + err
        ok = lines(out, "ok")
        assert f"ollama 0.6.5 at {ollama.url} (target ollama)" in ok
        assert any(line.startswith("llamacpp") and f"at {llama.url} (target llama)" in line for line in ok)
        # the fakes run in this (root's) test process: root sees it, its sockets too
        assert any(
            line.startswith(f"ollama: process {os.getpid()} (") and f"127.0.0.1:{ollama.port}" in line for line in ok
        ), out
        assert f"prometheus 127.0.0.1:{prom}: the address is free to listen on" in ok
        assert "Everything configured can work." in out and lines(out, "NO") == []

        config["targets"].append({"url": f"http://127.0.0.1:{down}", "type": "llamacpp", "name": "gone"})
        config["targets"].append({"url": ollama.url, "type": "vllm", "name": "mistyped", "log": "none"})
        config["outputs"].append({"type": "prometheus", "listen": f"127.0.0.1:{llama.port}"})
        code, out, _ = doctor(json.dumps(config))
        assert code == 1
        no = lines(out, "NO")
        assert any(line.startswith(f"http://127.0.0.1:{down} (target gone): down:") for line in no), out
        # a server that is down is not said to answer
        assert f"gone: nothing on this host listens on port {down}: no process to watch yet" in lines(out, "--"), out
        assert "gone: its log is looked for once the server runs (it is down)" in lines(out, "--"), out
        assert not any(line.startswith("gone:") for line in no), out
        assert any(
            f"prometheus 127.0.0.1:{llama.port}: cannot listen there" in line and "root's process" in line
            for line in no
        )
        assert "start the server, or correct its url/type/token in the config" in fixes(out)
        assert any(line.startswith(f"{ollama.url} (target mistyped): down:") for line in no), out
        assert "it answers as ollama: set `type: ollama` (or `auto`) for this target" in fixes(out), out
    finally:
        ollama.stop()
        llama.stop()


def test_discovery_lists_found_servers_and_silent_ports():
    ollama = fake_ollama([]).start()
    silent = free_port()
    try:
        config = {"discovery": {"ports": [ollama.port, silent]}, "gpu": {"enabled": False}}
        code, out, _ = doctor(json.dumps(config))
        assert code == 0, out
        assert f"ollama 0.6.5 at {ollama.url}" in lines(out, "ok")
        assert f"nothing answered as a model server on 127.0.0.1 ports {silent}" in lines(out, "--")
    finally:
        ollama.stop()


def test_gpu_backend_and_why(tmp_path):
    """No NVML here: the AMD and Intel cards of a recorded sysfs tree are named as the backends, with why."""
    code, out, _ = doctor(json.dumps({"targets": [], "gpu": {"sysfs_root": str(MIXED)}}))
    gpu = [line for line in lines(out, "ok") if line.startswith(("amd:", "intel:"))]
    assert gpu and all("NVML unavailable (" in line and "-> " in line and "card" in line for line in gpu), out
    assert gpu[0].startswith("amd: NVML unavailable (") and "AMD sysfs" in gpu[0]
    code, out, _ = doctor(json.dumps({"targets": [], "gpu": {"enabled": True, "sysfs_root": str(tmp_path)}}))
    assert code == 1 and any(line.startswith("no GPU: NVML unavailable") for line in lines(out, "NO"))


def test_telegraf_dropin_points_at_this_binary(tmp_path):
    layout = linux_layout(Path(sys.prefix))
    install(layout, tmp_path / "root")
    staged = tmp_path / "root/etc/telegraf/telegraf.d"
    code, out, _ = doctor('{"targets": []}', "--telegraf", str(staged))  # its config is not at /etc here
    assert code == 1 and "with --config /etc/telegraf-llm-input/config.yaml, which does not exist" in out
    assert (
        f"write it: mkdir -p /etc/telegraf-llm-input && {BINARY} sample-config > /etc/telegraf-llm-input/config.yaml"
        in fixes(out)
    )
    dropins = tmp_path / "telegraf.d"
    dropins.mkdir()
    real = replace(layout, config=tmp_path / "root/etc/telegraf-llm-input/config.yaml")
    (dropins / "telegraf-llm-input.conf").write_text(render_dropin(real))
    code, out, _ = doctor('{"targets": []}', "--telegraf", str(dropins))
    assert code == 0 and any("runs this binary" in line for line in lines(out, "ok")), out
    (dropins / "old.conf").write_text('[[inputs.execd]]\n  command = ["/nonexistent/bin/telegraf-llm-input"]\n')
    code, out, _ = doctor('{"targets": []}', "--telegraf", str(dropins))
    assert code == 1 and any(
        "runs /nonexistent/bin/telegraf-llm-input, which does not exist" in x for x in lines(out, "NO")
    )
    assert f"set command[0] to {BINARY} (or run install-service again)" in fixes(out)


@pytest.mark.realserver
def test_real_llama_server_root_owned_seen_by_an_unprivileged_user(make_llama_server, unprivileged_user):  # noqa: F811
    server = make_llama_server()
    target = {"url": server.url, "name": "llama", "log": "none"}  # it logs to its terminal (a test below)
    config = json.dumps({"targets": [target], "gpu": {"enabled": False}})
    # root: all green, exit 0
    code, out, err = doctor(config)
    assert code == 0, out + err
    ok = lines(out, "ok")
    assert any(line.startswith("llamacpp b") and f"at {server.url} (target llama)" in line for line in ok), out
    assert any(line.startswith(f"llama: process {server.pid} (llama-server, user root) and its sockets") for line in ok)
    assert lines(out, "NO") == []
    # an unprivileged user: the server answers, but its process is hidden; the fix is named; exit 1
    code, out, _ = doctor(config, user=USER)
    assert code == 1, out
    assert f"as user {USER} (uid {unprivileged_user.pw_uid})" in out
    assert any(line.startswith("llamacpp b") for line in lines(out, "ok"))  # HTTP works for anyone
    blocked = lines(out, "NO")
    assert f"llama: a socket on port {server.port} belongs to a process this user cannot see, owned by root" in blocked
    assert any(f.startswith("grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH") for f in fixes(out))
    assert any(line.startswith("the system journal") for line in blocked)
    assert "add the agent's user to the systemd-journal group (SupplementaryGroups=systemd-journal)" in fixes(out)
    # the same user with what the shipped unit grants: the process and its sockets are visible, exit 0
    code, out, _ = doctor(config, caps="+sys_ptrace,+dac_read_search")
    assert code == 0, out
    assert "capabilities CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE" in out
    assert any(
        line.startswith(f"llama: process {server.pid} (llama-server, user root) and its sockets")
        for line in lines(out, "ok")
    ), out


def test_unreadable_request_log_names_its_group(tmp_path, unprivileged_user):
    hidden = tmp_path / "requests.jsonl"  # pytest's tmp_path is under root's 0700 directory
    hidden.write_text("")
    code, out, _ = doctor(json.dumps({"targets": [], "logs": [{"path": str(hidden)}]}), user=USER)
    assert code == 1 and any(line.startswith(f"log {hidden}: cannot look into /tmp/") for line in lines(out, "NO"))
    open_dir = Path(tempfile.mkdtemp(prefix="doctor-"))
    try:
        open_dir.chmod(0o755)
        log = open_dir / "requests.jsonl"
        log.write_text("")
        log.chmod(0o640)
        code, out, _ = doctor(json.dumps({"targets": [], "logs": [{"path": str(log)}]}), user=USER)
        assert code == 1 and f"log {log}: Permission denied" in lines(out, "NO")
        assert any(f"{log} is root:root mode 640: add the agent's user to group root" in f for f in fixes(out))
        log.chmod(0o644)
        code, out, _ = doctor(json.dumps({"targets": [], "logs": [{"path": str(log)}]}), user=USER)
        assert code == 0 and f"log {log}: readable" in lines(out, "ok")
    finally:
        shutil.rmtree(open_dir)


def test_a_closed_directory_the_granted_capability_searches_hides_nothing(tmp_path, unprivileged_user):
    """A request log not written yet, under root's 0700 directory: with the shipped unit's CAP_DAC_READ_SEARCH the
    agent will see it appear (a note), not "cannot look into" (access(2) ignores a non-root user's capabilities)."""
    missing = tmp_path / "requests.jsonl"  # pytest's tmp_path is under root's 0700 directory
    config = json.dumps({"targets": [], "logs": [{"path": str(missing)}]})
    code, out, _ = doctor(config, caps="+dac_read_search")
    assert code == 0 and f"log {missing}: no such file yet (followed once it appears)" in lines(out, "--"), out
    code, out, err = doctor(config, user=USER)
    assert code == 1 and any(x.startswith(f"log {missing}: cannot look into /tmp/") for x in lines(out, "NO")), (
        out + err
    )


@pytest.mark.realserver
def test_real_influxdb_ping_and_write_permission(tmp_path):
    if influxd_binary() is None:
        pytest.skip("influxd not installed (apt-get install influxdb)")
    db = InfluxDB1(tmp_path / "influx").start()
    try:
        v1 = {"type": "influxdb_v1", "url": db.url, "database": "llm"}
        code, out, _ = doctor(json.dumps({"targets": [], "outputs": [v1]}))
        assert code == 1
        (refused,) = lines(out, "NO")
        assert refused.startswith(f"influxdb_v1 {db.url} (InfluxDB 1.") and "refused: HTTP 404" in refused
        assert "create it: influx -execute 'CREATE DATABASE \"llm\"'" in fixes(out)
        db.create_db("llm")
        code, out, _ = doctor(json.dumps({"targets": [], "outputs": [v1]}))
        assert code == 0 and any("writing into database 'llm' is allowed" in x for x in lines(out, "ok")), out
        assert db.query("SHOW MEASUREMENTS", db="llm")["results"][0].get("series") is None  # nothing was written
        # 1.6 has no v2 API: the influxdb_v2 output cannot work against it, and the fix says what to use
        v2 = {"type": "influxdb_v2", "url": db.url, "bucket": "llm", "org": "o", "token": "t"}
        code, out, _ = doctor(json.dumps({"targets": [], "outputs": [v2]}))
        assert code == 1 and "this InfluxDB has no v2 API (1.x before 1.8): use the influxdb_v1 output" in fixes(out)
    finally:
        db.stop()
    code, out, _ = doctor(json.dumps({"targets": [], "outputs": [v1]}))
    assert code == 1 and any(re.search(r"no answer \(Connect", x) for x in lines(out, "NO"))


def test_a_journal_log_the_config_names_blocks_when_unreadable(unprivileged_user):
    ollama = fake_ollama([]).start()
    try:
        target = {"url": ollama.url, "name": "o", "log": "journal:ollama", "process": {"enabled": False}}
        config = json.dumps({"targets": [target], "gpu": {"enabled": False}})
        code, out, _ = doctor(config, user=USER)
        assert code == 1 and any(x.startswith("the journal of ollama: not readable") for x in lines(out, "NO")), out
        assert "add the agent's user to the systemd-journal group (SupplementaryGroups=systemd-journal)" in fixes(out)
        code, out, _ = doctor(config)
        assert code == 0 and any(x.startswith("the journal of ollama: readable") for x in lines(out, "ok")), out
    finally:
        ollama.stop()


@pytest.mark.realserver
def test_a_server_whose_log_is_nowhere_to_be_found_is_named_with_the_fix(make_llama_server, tmp_path):  # noqa: F811
    """llama-server started in a terminal writes its log there: no requests/s or latency; doctor said all was well."""
    server = make_llama_server(terminal=True)
    config = json.dumps({"targets": [{"url": server.url, "name": "llama"}], "gpu": {"enabled": False}})
    code, out, err = doctor(config)
    assert code == 0, out + err  # worth knowing, not blocking: everything else works
    said = [line for line in lines(out, "NO") if line.startswith("llama: its log")]
    assert said and "requests/s" in said[0], out
    assert any("--log-file" in f for f in fixes(out)), out
    # with the log given, doctor says which it reads
    log = tmp_path / "llama.log"
    log.write_text("")
    config = json.dumps({"targets": [{"url": server.url, "name": "llama", "log": str(log)}], "gpu": {"enabled": False}})
    code, out, _ = doctor(config)
    assert code == 0 and not [line for line in lines(out, "NO") if line.startswith("llama: its log")], out


SERVE = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTES = json.loads(sys.argv[2])

class Api(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(ROUTES.get(self.path, {"error": "not found"})).encode()
        self.send_response(200 if self.path in ROUTES else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Api).serve_forever()
"""
"""A model server's API as USER runs it: `SERVE PORT ROUTES_JSON [ARGS...]` (ARGS only for its command line)."""
OLLAMA_ROUTES = {"/api/version": {"version": "0.12.6"}, "/api/ps": {"models": []}, "/api/tags": {"models": []}}


def serve_as_user(home: Path, name: str, port: int, routes: dict, *args: str) -> subprocess.Popen:
    """A process named `name` (as `ollama serve` or `llama-server` is: the system's python under that name; the
    checkout may be closed to USER) owned by USER, answering `routes` on `port`."""
    (home / name).symlink_to(os.path.realpath(sys._base_executable))
    (home / "serve.py").write_text(SERVE)
    argv = [str(home / name), str(home / "serve.py"), str(port), json.dumps(routes), *args]
    return subprocess.Popen(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", *argv])


def doctor_once_up(config: str, up: str, **kwargs):
    """doctor, asked again until the server started a moment ago answers (`up` in its output)."""
    deadline = time.monotonic() + 30
    while True:
        code, out, err = doctor(config, **kwargs)
        if up in out or time.monotonic() > deadline:
            return code, out, err
        time.sleep(0.2)


def test_a_log_file_the_agent_finds_by_itself_blocks_when_unreadable(unprivileged_user):
    """`llama-server --log-file FILE`, no `log:` key: the agent reads FILE by default, so a user who cannot read
    it gets no requests/s; doctor said NO but exit 0 (an unreadable found journal already blocked). The server
    runs as that user (its process visible without capabilities); the file is root's, rotated in with mode 600."""
    home = Path(tempfile.mkdtemp(prefix="doctor-llama-"))
    port = free_port()
    server = None
    try:
        home.chmod(0o755)
        log = home / "llama.log"
        log.write_text("")
        log.chmod(0o600)
        server = serve_as_user(home, "llama-server", port, {"/health": {"status": "ok"}}, "--log-file", str(log))
        target = {"url": f"http://127.0.0.1:{port}", "name": "llama", "type": "llamacpp"}
        config = json.dumps({"targets": [target], "gpu": {"enabled": False}})
        code, out, err = doctor_once_up(config, "ok  llamacpp", user=USER)
        said = [x for x in lines(out, "NO") if x.startswith(f"llama: its log: {log}")]
        assert said and said[0].endswith("not readable"), out + err
        assert code == 1, out
        assert any(f.startswith(f"{log} (owner root:root, mode 0600) is not readable") for f in fixes(out)), out
        log.chmod(0o644)
        code, out, _ = doctor(config, user=USER)
        assert f"llama: its log: {log}" in lines(out, "ok") and code == 0, out
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(home)


@pytest.mark.realserver
def test_a_log_file_readable_through_the_granted_capability_is_readable(make_llama_server, unprivileged_user):  # noqa: F811
    """The shipped unit's CAP_DAC_READ_SEARCH reads a root-owned 0600 `--log-file`; access(2) ignores
    capabilities for a non-root user, so doctor (and the agent, which then skipped the log) said it could not."""
    home = Path(tempfile.mkdtemp(prefix="doctor-llama-"))
    try:
        home.chmod(0o755)
        log = home / "llama.log"
        log.write_text("")
        log.chmod(0o600)
        server = make_llama_server(extra=["--log-file", str(log)])
        config = json.dumps({"targets": [{"url": server.url, "name": "llama"}], "gpu": {"enabled": False}})
        code, out, err = doctor(config, caps="+sys_ptrace,+dac_read_search")
        assert f"llama: its log: {log}" in lines(out, "ok"), out + err
        assert code == 0, out
    finally:
        shutil.rmtree(home)


def test_a_journal_the_agent_finds_by_itself_blocks_when_unreadable(unprivileged_user):
    """Ollama under systemd (`journalctl -u ollama`), no `log:` key: the agent reads that journal by default, so
    a user who cannot read it gets no requests/s; doctor said NO but exit 0. Its own Ollama (visible without
    capabilities) runs in a systemd service's cgroup, as a packaged Ollama does."""
    systemd = Path("/sys/fs/cgroup/systemd")
    if not (systemd / "cgroup.procs").exists() or not os.access(systemd, os.W_OK):
        pytest.skip("needs a writable systemd cgroup hierarchy to put a server in a service")
    home = Path(tempfile.mkdtemp(prefix="doctor-ollama-"))
    unit = systemd / "system.slice" / f"qa-ollama-{os.getpid()}.service"
    port = free_port()
    server = None
    try:
        home.chmod(0o755)
        unit.mkdir(parents=True)
        server = serve_as_user(home, "ollama", port, OLLAMA_ROUTES)
        (unit / "cgroup.procs").write_text(str(server.pid))
        config = json.dumps({"targets": [{"url": f"http://127.0.0.1:{port}", "name": "o"}], "gpu": {"enabled": False}})
        code, out, err = doctor_once_up(config, "ollama 0.12.6", user=USER)
        said = [x for x in lines(out, "NO") if x.startswith(f"o: its log: the journal of {unit.name}")]
        assert said and said[0].endswith("not readable"), out + err
        assert code == 1, out
        assert "add the agent's user to the systemd-journal group (SupplementaryGroups=systemd-journal)" in fixes(out)
        code, out, _ = doctor(config)  # root reads it: all well
        assert any(x.startswith(f"o: its log: the journal of {unit.name}") for x in lines(out, "ok")), out
    finally:
        if server is not None:
            server.kill()
            server.wait()
        if unit.exists():
            unit.rmdir()
        shutil.rmtree(home)


def test_a_targets_docker_log_and_home_relative_log_are_checked(tmp_path):
    """`log: docker:ID` is the container's json-file log, `log: ~/...` a file in the home directory: doctor looks
    at both (it used to skip every `log:` not starting with `/`)."""
    ollama = fake_ollama([]).start()
    (tmp_path / "ollama.log").write_text("")
    try:
        config = {
            "targets": [
                {"url": ollama.url, "type": "ollama", "name": "a", "log": "docker:0badc0ffee"},
                {"url": ollama.url, "type": "ollama", "name": "b", "log": "~/ollama.log"},
            ],
            "host": {"enabled": False},
        }
        code, out, err = doctor(json.dumps(config), env={"HOME": str(tmp_path)})
        path = "/var/lib/docker/containers/0badc0ffee/0badc0ffee-json.log"
        assert (
            f"log docker:0badc0ffee ({path}): no such file yet (followed once it appears; a container logging " in out
        )
        assert f"log {tmp_path}/ollama.log: readable" in lines(out, "ok"), out + err
    finally:
        ollama.stop()
