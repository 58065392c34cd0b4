"""Where a proxy's added TTFT goes, leg by leg, ours beside nginx's, from a loopback capture in the same run.

bench/proxy.py's upstream, client and nginx; sequential one-token requests, the paths interleaved. A capture of
loopback (an AF_PACKET socket, kernel timestamps: it needs root or CAP_NET_RAW, else this benchmark says so and
stops) times each request's packets:
  in:       the client's request packet -> the proxy's request packet to the upstream (wake, read, parse, write);
  upstream: that packet -> the upstream's packet bringing the first token (the model server's own time);
  out:      the token's packet -> the proxy's packet bringing it to the client;
and how often the proxy read the answer's head and its first token in one read (it woke after both had come).

    python -m bench.proxy_legs [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy import added_ttft, pct, three_paths  # noqa: E402
from bench.report import record  # noqa: E402

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35


def open_capture() -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
    sock.bind(("lo", 0))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
    return sock


def _kind(payload: bytes) -> str:
    if payload.startswith(b"POST "):
        return "request"
    if payload.startswith(b"HTTP/1.1 "):
        return "head+token" if b'"content"' in payload else "head"
    return "token" if b'"content"' in payload else "other"


def capture(out: Path) -> None:
    """The capture child: (ns, source port, destination port, kind) of each TCP packet with a payload, until
    SIGTERM."""
    sock, packets, stop = open_capture(), [], []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sock.settimeout(0.2)
    while not stop:
        try:
            data, ancillary, _, address = sock.recvmsg(2048, 64)
        except (TimeoutError, InterruptedError):
            continue
        if address[2] == socket.PACKET_OUTGOING:  # loopback shows each packet twice
            continue
        ip = data[14:]
        if ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl, total = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:total]
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if not payload:
            continue
        ns = next(
            (
                s * 10**9 + n
                for _, kind, d in ancillary
                if kind == SO_TIMESTAMPNS
                for s, n in [struct.unpack("qq", d[:16])]
            ),
            0,
        )
        packets.append((ns, *struct.unpack("!HH", tcp[:4]), _kind(payload)))
    out.write_text(json.dumps(packets))


def legs(packets: list[list], ports: dict[str, int]) -> dict[str, dict[str, list[int]]]:
    """Per path, each request's legs in ns (requests are sequential: a path's packets follow its request)."""
    upstream = ports["direct"]
    fronts = {port: name for name, port in ports.items() if name != "direct"}
    out: dict[str, dict[str, list[int]]] = {
        n: {"in": [], "upstream": [], "out": [], "one read": []} for n in fronts.values()
    }
    current: dict | None = None
    for ns, sport, dport, kind in packets:
        if kind == "request" and dport in fronts:
            current = {"path": fronts[dport], "t1": ns}
        elif current is None:
            continue
        elif kind == "request" and dport == upstream and "t2" not in current:
            current["t2"] = ns
        elif sport == upstream and "t3" not in current and "t2" in current and "token" in kind:
            current["t3"] = ns
        elif sport == ports[current["path"]] and "token" in kind and "t3" in current:
            got = out[current["path"]]
            got["in"].append(current["t2"] - current["t1"])
            got["upstream"].append(current["t3"] - current["t2"])
            got["out"].append(ns - current["t3"])
            got["one read"].append(int(kind == "head+token"))
            current = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--capture-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.capture_child:
        capture(args.capture_child)
        return
    try:
        open_capture().close()
    except (PermissionError, OSError) as exc:
        print(f"proxy legs: SKIPPED: a loopback capture needs root or CAP_NET_RAW ({exc.strerror or exc})")
        return
    with three_paths() as (ports, _), tempfile.TemporaryDirectory() as tmp:
        packets_file = Path(tmp) / "packets.json"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        capturer = subprocess.Popen(
            [sys.executable, "-m", "bench.proxy_legs", "--capture-child", str(packets_file)], env=env
        )
        time.sleep(1.0)
        asyncio.run(added_ttft(ports, args.requests, lead=False))
        capturer.send_signal(signal.SIGTERM)
        capturer.wait(30)
        found = legs(json.loads(packets_file.read_text()), ports)
    report(found, args.requests)


def report(found: dict[str, dict[str, list[int]]], n: int) -> None:
    for path, got in found.items():
        if not got["in"]:
            print(f"proxy legs: {path}: no request matched in the capture")
            continue
        cells = "  ".join(
            f"{leg} p50 {pct(got[leg], 0.5) / 1e3:.1f} p99 {pct(got[leg], 0.99) / 1e3:.1f} us"
            for leg in ("in", "upstream", "out")
        )
        print(f"proxy legs: {path:6s} {len(got['in'])}/{n} requests: {cells}; "
              f"head and token read at once {100 * sum(got['one read']) / len(got['one read']):.0f}%")  # fmt: skip
    ours, theirs = found.get("proxy"), found.get("nginx")
    if ours and theirs and ours["in"] and theirs["in"]:
        for leg in ("in", "out"):
            record("proxy", f"added TTFT, the {leg} leg (loopback capture) p50 / p99",
                   f"{pct(ours[leg], 0.5) / 1e3:.1f} / {pct(ours[leg], 0.99) / 1e3:.1f} us", "nginx",
                   f"{pct(theirs[leg], 0.5) / 1e3:.1f} / {pct(theirs[leg], 0.99) / 1e3:.1f} us",
                   f"+{(pct(ours[leg], 0.5) - pct(theirs[leg], 0.5)) / 1e3:.1f} us at p50")  # fmt: skip


if __name__ == "__main__":
    main()
