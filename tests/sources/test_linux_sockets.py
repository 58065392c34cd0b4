"""The cheap listening-socket check against real sockets: netlink and /proc/net/tcp agree, only listeners count."""

from __future__ import annotations

import os
import socket

import pytest

from telegraf_llm_input.sources.linux_sockets import listen_inodes, netlink_listen_inodes, proc_net_listen_inodes
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
