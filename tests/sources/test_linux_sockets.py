"""The cheap listening-socket check against real sockets: netlink and /proc/net/tcp agree, only listeners count."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from telegraf_llm_input.sources.linux_sockets import (
    Listener,
    listen_inodes,
    listeners,
    netlink_listen_inodes,
    netlink_listeners,
    proc_net_listen_inodes,
    proc_net_listeners,
)
from tests.support.procs import free_port

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="Linux only")
CHECKS = [netlink_listen_inodes, proc_net_listen_inodes, listen_inodes]


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_only_the_listening_socket_on_the_port_counts(check):
    port = free_port()
    if check is netlink_listen_inodes and check(port) is None:
        pytest.skip("netlink sock_diag refused here")
    assert check(port) == frozenset()
    listener = socket.create_server(("127.0.0.1", port))
    try:
        assert check(port) == {os.fstat(listener.fileno()).st_ino}
        client = socket.create_connection(("127.0.0.1", port))  # established sockets on the port do not count
        accepted, _ = listener.accept()
        assert check(port) == {os.fstat(listener.fileno()).st_ino}
        client.close()
        accepted.close()
    finally:
        listener.close()
    assert check(port) == frozenset()


def test_ipv6_listener_and_a_missing_table():
    port = free_port()
    try:
        listener = socket.create_server(("::1", port), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    with listener:
        inode = os.fstat(listener.fileno()).st_ino
        assert proc_net_listen_inodes(port) == {inode}
        assert listen_inodes(port) == {inode}
    assert proc_net_listen_inodes(port, tables=["/nonexistent/tcp"]) is None


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to listen as another uid")
def test_owner_of_another_users_listener():
    """The owner is what any user can read about a socket whose process it cannot see (process.py's message)."""
    port = free_port()
    code = f"import socket,time; s=socket.create_server(('127.0.0.1',{port})); print(s.fileno(), flush=True); time.sleep(30)"
    child = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child.stdout.readline()
        for found in (netlink_listeners(port), proc_net_listeners(port), listeners(port)):
            if found is None:
                continue
            assert list(found.values()) == [Listener(65534, "127.0.0.1")] and set(found) == set(listen_inodes(port))
    finally:
        child.kill()
        child.wait()
    assert listeners(port) == {}


def test_addresses_of_v4_and_v6_listeners():
    port = free_port()
    with socket.create_server(("0.0.0.0", port)):
        try:
            v6 = socket.create_server(("::1", port), family=socket.AF_INET6)
        except OSError:
            v6 = None
        want = {"0.0.0.0"} | ({"::1"} if v6 else set())
        for found in (netlink_listeners(port), proc_net_listeners(port)):
            if found is not None:
                assert {s.ip for s in found.values()} == want and {s.uid for s in found.values()} == {os.geteuid()}
        if v6:
            v6.close()
