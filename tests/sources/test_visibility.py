"""Another user's model server, seen from an unprivileged agent: the message says what is true and what to grant,
and the grant it names (CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH, both) is what makes the process visible."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from telegraf_llm_input.sources.visibility import hidden_listener, listener_owners
from tests.support.procs import free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not sys.platform.startswith("linux"),
    reason="needs root (to be another user) and setpriv",
)
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def agent_once_as_nobody(port: int, caps: str | None) -> str:
    config = f"targets: [{{url: 'http://127.0.0.1:{port}', type: prometheus, name: t}}]\n"
    config += "host: {enabled: false}\ngpu: {enabled: false}\n"
    grant = [f"--inh-caps={caps}", f"--ambient-caps={caps}"] if caps else []
    r = subprocess.run(
        [*NOBODY, *grant, sys.executable, "-m", "telegraf_llm_input", "--once", "--config", "-"],
        input=config,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    return r.stdout + r.stderr


def test_a_root_owned_server_hidden_from_nobody_is_named_with_its_fix():
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # root's
        assert listener_owners(port) == ["root"]
        assert hidden_listener(port) is not None
        out = agent_once_as_nobody(port, None)
        assert f"a socket on port {port} belongs to a process this user cannot see, owned by root" in out
        assert "CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH" in out and "nothing listening" not in out
        assert "llm_process" in out and "up=0i" in out.split("llm_process", 1)[1].split("\n")[0]
        for one in ("+sys_ptrace", "+dac_read_search"):  # measured: one alone is not enough
            assert "cannot see" in agent_once_as_nobody(port, one)
        both = agent_once_as_nobody(port, "+sys_ptrace,+dac_read_search")
        line = next(x for x in both.splitlines() if x.startswith("llm_process"))
        assert f"pid={os.getpid()}i" in line and f'listen_address="127.0.0.1:{port}"' in line and "exposed=0i" in line
        assert "num_fds=" in line
    assert hidden_listener(port) is None  # nothing listens: the old words stand


def test_found_by_pattern_its_exposure_comes_from_the_socket_table():
    """Another user's server found by `process.pattern`: its own sockets are hidden, but its user's listener on the
    port is in the socket table, so `listen_address` and `exposed` (the "exposed on the network" alert) are there."""
    port = free_port()
    marker = f"fake-model-server-{port}"
    code = f"import socket,sys,time; s=socket.create_server(('0.0.0.0',{port})); print(1, flush=True); time.sleep(60)"
    server = subprocess.Popen([sys.executable, "-c", code, marker], stdout=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()
        config = f"targets: [{{url: 'http://127.0.0.1:{port}', type: prometheus, name: t, process: {{pattern: '{marker}'}}}}]\n"
        config += "host: {enabled: false}\ngpu: {enabled: false}\n"
        r = subprocess.run(
            [*NOBODY, sys.executable, "-m", "telegraf_llm_input", "--once", "--config", "-"],
            input=config,
            capture_output=True,
            text=True,
            timeout=60,
        )
        line = next(x for x in r.stdout.splitlines() if x.startswith("llm_process"))
        assert f"pid={server.pid}i" in line and "up=1i" in line, r.stdout + r.stderr
        assert f'listen_address="0.0.0.0:{port}"' in line and "exposed=1i" in line
        assert "num_fds=" not in line  # not readable, so absent (never 0)
    finally:
        server.kill()
        server.wait()
