"""Where a server's log is: the `log:` key, the listening process's cgroup (service, container), the default file."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess

import psutil
import pytest

from telegraf_llm_input.config.loader import ConfigError
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.sources.logfind import (
    LogLocation,
    from_cgroup,
    from_key,
    locate,
    log_file_arg,
    server_type_of,
)
from tests.realserver.conftest import llama_binary, make_llama_server, tiny_model  # noqa: F401  (fixtures)

ID = "4f2a" + "0" * 60


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0::/system.slice/ollama.service\n", LogLocation("journal", unit="ollama.service")),
        (
            "12:pids:/system.slice/llama-server.service\n1:name=systemd:/system.slice/llama-server.service\n0::/\n",
            LogLocation("journal", unit="llama-server.service"),
        ),
        (
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/ollama.service\n",
            LogLocation("journal", unit="ollama.service", user_unit=True),
        ),
        (f"0::/system.slice/docker-{ID}.scope\n", LogLocation("docker", path=f"/d/{ID}/{ID}-json.log")),
        (f"12:memory:/docker/{ID}\n", LogLocation("docker", path=f"/d/{ID}/{ID}-json.log")),
        ("0::/user.slice/user-1000.slice/session-3.scope\n", None),  # a terminal: output went there
        ("0::/\n", None),
        ("", None),
    ],
)
def test_cgroups(text, expected):
    assert from_cgroup(text, docker_root="/d") == expected


def test_log_keys(tmp_path):
    assert from_key("journal:ollama") == LogLocation("journal", unit="ollama.service")
    assert from_key("journal:llama.service") == LogLocation("journal", unit="llama.service")
    assert from_key("/var/log/ollama.log") == LogLocation("file", path="/var/log/ollama.log")
    assert from_key("~/x.log") == LogLocation("file", path=os.path.expanduser("~/x.log"))
    assert from_key("None") is None
    container = tmp_path / ID
    container.mkdir()
    (container / f"{ID}-json.log").write_text("")
    assert from_key("docker:4f2a", docker_root=str(tmp_path)) == LogLocation(
        "docker", path=str(container / f"{ID}-json.log")
    )
    assert from_key(f"{container}/{ID}-json.log").kind == "docker"
    for empty in (" ", "journal:", "docker:", " docker: "):  # no unit, no container: every container's log
        with pytest.raises(ConfigError, match="journal:UNIT, docker:ID"):
            TargetConfig(url="http://127.0.0.1:11434", log=empty)


def test_process_names():
    assert server_type_of("ollama") == "ollama"
    assert server_type_of("llama-server") == "llamacpp"
    assert server_type_of("python3") is None


@pytest.fixture
def ollama_process(tmp_path):
    """A process named `ollama` (its executable's name), as `ollama serve` is."""
    exe = tmp_path / "ollama"
    exe.symlink_to(shutil.which("sleep"))
    proc = subprocess.Popen([str(exe), "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("name", "kind", "stream"), [("ollama", "ollama", "stdout"), ("llama-server", "llamacpp", "stderr")]
)
def test_a_server_whose_output_is_redirected_to_a_file_is_read_there(tmp_path, name, kind, stream):
    """`llama-server ... > llama.log 2>&1 &`, nohup, or a unit's `StandardOutput=append:FILE`: the log is that file
    (it was "nowhere to be found"; under such a unit the empty journal was read: requests/s 0 under traffic). Only
    the stream with the request lines counts: Ollama's access lines are on stdout, llama-server's on stderr."""
    exe = tmp_path / name
    exe.symlink_to(shutil.which("sleep"))
    log = tmp_path / "server.log"
    with open(log, "ab") as f:
        quiet = subprocess.DEVNULL
        streams = {"stdout": f, "stderr": quiet} if stream == "stdout" else {"stdout": quiet, "stderr": f}
        proc = subprocess.Popen([str(exe), "60"], **streams)
        swapped = subprocess.Popen([str(exe), "60"], stdout=streams["stderr"], stderr=streams["stdout"])
    target = TargetConfig(url="http://127.0.0.1:11434", type=kind)
    try:
        found = locate(target, psutil.Process(proc.pid))
        assert found.location == LogLocation("file", path=str(log))
        assert locate(TargetConfig(url=target.url), psutil.Process(proc.pid)).location == found.location  # auto
        # the other stream in a file alone: not the log (its lines are not the requests)
        assert locate(target, psutil.Process(swapped.pid)).location != LogLocation("file", path=str(log))
        log.unlink()  # deleted since: not followed
        assert locate(target, psutil.Process(proc.pid)).location != LogLocation("file", path=str(log))
    finally:
        for p in (proc, swapped):
            p.kill()
            p.wait()


def test_the_default_file_of_the_servers_user(ollama_process):
    with open(f"/proc/{ollama_process.pid}/cgroup") as fh:
        if from_cgroup(fh.read()) is not None:
            pytest.skip("this test runs inside a systemd service or container: its journal would be chosen")
    assert ollama_process.name() == "ollama"
    found = locate(TargetConfig(url="http://127.0.0.1:11434", type="ollama"), ollama_process)
    home = pwd.getpwuid(os.getuid()).pw_dir
    assert found.location == LogLocation("file", path=os.path.join(home, ".ollama/logs/server.log"))
    auto = locate(TargetConfig(url="http://127.0.0.1:11434"), ollama_process)
    assert auto.server_type == "ollama" and auto.location == found.location
    # a process that is not the server (a proxy, a test's fake): its unit's log is not the server's
    me = psutil.Process(os.getpid())
    assert locate(TargetConfig(url="http://127.0.0.1:11434", type="ollama"), me).location is None
    # llama.cpp has no default file; the key wins over what is found
    assert locate(TargetConfig(url="http://127.0.0.1:8080", type="llamacpp"), me).location is None
    keyed = locate(TargetConfig(url="http://127.0.0.1:8080", type="llamacpp", log="journal:llama"), me)
    assert keyed.location == LogLocation("journal", unit="llama.service") and keyed.server_type == "llamacpp"
    assert locate(TargetConfig(url="http://10.0.0.9:11434", type="ollama"), None).location is None


@pytest.mark.realserver
def test_llama_servers_own_log_file_is_found_from_its_command_line(make_llama_server, tmp_path):  # noqa: F811
    """`llama-server --log-file FILE` started by hand (no unit, no container): its log is that file; it was
    reported as nowhere and never read."""
    log = tmp_path / "llama.log"
    server = make_llama_server(extra=["--log-file", str(log)])
    found = locate(TargetConfig(url=server.url), psutil.Process(server.pid))
    assert found.server_type == "llamacpp" and found.location == LogLocation("file", path=str(log))
    assert log.exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["llama-server", "-m", "m.gguf", "--log-file", "x.log"], "/srv/x.log"),
        (["llama-server", "--log-file=/var/log/l.log"], "/var/log/l.log"),
        (["llama-server", "-m", "m.gguf"], None),
        (["llama-server", "--log-file"], None),
    ],
)
def test_log_file_argument(argv, expected):
    assert log_file_arg(argv, "/srv") == expected
