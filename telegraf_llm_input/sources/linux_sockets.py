"""Which TCP sockets listen on a port, on Linux, without a per-process scan: the process source's cheap check.

Asked every gather, so it must cost next to nothing beside the model. The kernel's sock_diag netlink
interface, asked for listening sockets only, walks just the listening hash (~50 us); /proc/net/tcp{,6}
walks every socket bucket of the machine (milliseconds on a large-memory host) and is the fallback
where netlink is refused. Both give socket inodes: equal sets mean nothing changed on the port. Both also
give each socket's owner (uid), which any user may read: when the process behind a socket is hidden from
us (another user's, without CAP_SYS_PTRACE), the owner is what we can truthfully say about it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Sequence
from typing import NamedTuple

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST_DUMP = 0x1 | 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCPF_LISTEN = 1 << 10
_NLMSG_HDR = struct.Struct("=IHHII")
_DIAG_REQ = struct.Struct("=BBBBI")  # family, protocol, ext, pad, states; then the 48-byte socket id
_SPORT_OFFSET = 4  # in inet_diag_msg: family, state, timer, retrans, then id.sport (big-endian)
_SRC_OFFSET = 8  # id.dport, then id.src: 16 bytes (IPv4 in the first 4)
_UID_OFFSET = 4 + 48 + 12  # after the socket id: expires, rqueue, wqueue, then uid
_INODE_OFFSET = 4 + 48 + 16  # then inode
TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


class Listener(NamedTuple):
    """A listening socket as the socket table shows it to anyone: its owner and its local address."""

    uid: int
    ip: str


def netlink_listen_inodes(port: int) -> frozenset[int] | None:
    """Inodes of the TCP sockets listening on `port` (IPv4 and IPv6), or None when netlink is unavailable."""
    found = netlink_listeners(port)
    return None if found is None else frozenset(found)


def netlink_listeners(port: int) -> dict[int, Listener] | None:
    """inode -> owner and address of the TCP sockets listening on `port`, or None when netlink is unavailable."""
    inodes: dict[int, Listener] = {}
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
            for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
                req = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, TCPF_LISTEN) + bytes(48)
                sock.send(
                    _NLMSG_HDR.pack(_NLMSG_HDR.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST_DUMP, seq, 0) + req
                )
                if not _read_dump(sock, port, inodes):
                    return None
    except (OSError, AttributeError):  # AttributeError: no AF_NETLINK on this platform
        return None
    return inodes


def _read_dump(sock: socket.socket, port: int, inodes: dict[int, Listener]) -> bool:
    while True:
        data = sock.recv(65536)
        if not data:
            return False
        offset = 0
        while offset + _NLMSG_HDR.size <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if kind == NLMSG_DONE:
                return True
            if kind == NLMSG_ERROR or length < _NLMSG_HDR.size:
                return False
            body = offset + _NLMSG_HDR.size
            if struct.unpack_from(">H", data, body + _SPORT_OFFSET)[0] == port:
                uid, inode = struct.unpack_from("=II", data, body + _UID_OFFSET)
                family = data[body]
                raw = data[body + _SRC_OFFSET : body + _SRC_OFFSET + (4 if family == socket.AF_INET else 16)]
                inodes[inode] = Listener(uid, str(ipaddress.ip_address(raw)))
            offset += (length + 3) & ~3


def proc_net_listen_inodes(port: int, tables: Sequence[str] = TCP_TABLES) -> frozenset[int] | None:
    """The same from /proc/net/tcp{,6} (a byte search for the port); None where there is no such table."""
    found = proc_net_listeners(port, tables)
    return None if found is None else frozenset(found)


def proc_net_listeners(port: int, tables: Sequence[str] = TCP_TABLES) -> dict[int, Listener] | None:
    """inode -> owner and address from /proc/net/tcp{,6}; None where there is no such table."""
    # A line: "  sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode"
    needle = f":{port:04X} ".encode()
    inodes: dict[int, Listener] = {}
    seen = False
    for table in tables:
        try:
            with open(table, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        seen = True
        start = data.find(needle)
        while start >= 0:
            line_start = data.rfind(b"\n", 0, start) + 1
            line_end = data.find(b"\n", start)
            cols = data[line_start : line_end if line_end >= 0 else len(data)].split()
            # only the local address column counts (a client socket's remote port may match too)
            if len(cols) > 9 and cols[1].endswith(needle[:-1]) and cols[3] == b"0A":
                inodes[int(cols[9])] = Listener(int(cols[7]), _proc_net_ip(cols[1].split(b":")[0]))
            if line_end < 0:
                break
            start = data.find(needle, line_end)
    return inodes if seen else None


def _proc_net_ip(hex_addr: bytes) -> str:
    """/proc/net/tcp's address: 32-bit words in host byte order (little-endian on the machines we run on)."""
    raw = bytes.fromhex(hex_addr.decode())
    return str(ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))))


def listeners(port: int) -> dict[int, Listener] | None:
    """inode -> owner and address of the sockets listening on `port`: netlink first, /proc/net/tcp where it
    is refused; None off Linux."""
    found = netlink_listeners(port)
    return found if found is not None else proc_net_listeners(port)


def listen_inodes(port: int) -> frozenset[int] | None:
    """Netlink first, /proc/net/tcp where it is refused; None off Linux."""
    found = listeners(port)
    return None if found is None else frozenset(found)
