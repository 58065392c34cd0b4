"""`llm_process`: the model server's own process: is it up, did it restart, what does it hold.

Found by `process.pid_file`, `process.pattern`, or (default, local targets only) as whoever listens
on the target's port. The process sits beside a model that wants every core, so a gather reads only
what changes: once found, the pid is re-checked cheaply each gather (same pid, same start time, and
the listening sockets on the port, one netlink question on Linux); its children and listen
addresses are re-read only every `REFRESH_S` or when those sockets change. The full search (every
process's sockets) runs only when the pid is gone or stopped listening, and a down target repeats
it only when the sockets on its port change. How a port maps to pids is a `PortLookup` (one per
platform), so another platform plugs in its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import psutil

from telegraf_llm_input.config import Config
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.lazy import lazy_import
from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import Metric, clean_fields
from telegraf_llm_input.nvml import NvmlSession
from telegraf_llm_input.sources import drm_fdinfo
from telegraf_llm_input.sources.base import GatherContext, Source, SourceEnv
from telegraf_llm_input.sources.linux_sockets import listen_inodes
from telegraf_llm_input.sources.visibility import hidden_listener, table_addresses

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config
    from telegraf_llm_input.sources import macos_ports
else:
    macos_ports = lazy_import("telegraf_llm_input.sources.macos_ports")  # macOS only

log = get_logger("process")

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
REFRESH_S = 60.0
"""How often the children list and listen addresses of a live process are re-read from scratch."""
PATTERN_RESCAN_S = 60.0
"""A down `process.pattern` target reads only new pids' command lines, and all of them this often
(a process that exec()s into the server keeps its pid)."""


def is_local_host(host: str) -> bool:
    """True when a URL's host is this machine (loopback, unspecified, or our own hostname)."""
    host = host.strip("[]").lower()
    if host in LOCAL_NAMES or host == socket.gethostname().lower():
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_unspecified


def is_loopback_address(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


def format_address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def target_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def cpu_percent(prev: tuple[float, float] | None, now: tuple[float, float]) -> float | None:
    """CPU % (100 = one core) between two (monotonic seconds, CPU seconds) samples; None on a drop."""
    if prev is None:
        return None
    wall = now[0] - prev[0]
    cpu = now[1] - prev[1]
    if wall <= 0 or cpu < 0:
        return None
    return 100.0 * cpu / wall


@dataclass
class Found:
    proc: psutil.Process
    create_time: float


def _listeners(conns: Iterable, port: int) -> list[str]:
    return sorted({c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port})


class PortLookup(Protocol):
    """Which processes listen on a TCP port: the seam where a platform plugs in its own lookup."""

    def sockets(self, port: int) -> frozenset | None:
        """A cheap identity of the listening sockets on `port` (empty: nothing listens), or None when
        this platform cannot tell cheaply. Equal answers mean nothing changed."""
        ...

    def pids(self, port: int) -> set[int]:
        """The pids listening on `port` (the full, costly search)."""
        ...


class PsutilPortLookup:
    """Every platform psutil knows; the cheap check only on Linux (sock_diag, /proc/net/tcp)."""

    def sockets(self, port: int) -> frozenset | None:
        return listen_inodes(port) if sys.platform.startswith("linux") else None

    def pids(self, port: int) -> set[int]:
        pids: set[int] = set()
        try:
            for c in psutil.net_connections("tcp"):
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                    pids.add(c.pid)
        except psutil.AccessDenied:
            pass
        if not pids:
            # net_connections may be refused, or show the socket without its pid (another user's
            # process): ask each process we are allowed to inspect.
            for proc in psutil.process_iter():
                try:
                    if _listeners(_connections(proc), port):
                        pids.add(proc.pid)
                except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                    continue
        if not pids and sys.platform == "darwin":
            # macOS without root: psutil is refused what lsof still shows of the user's own listeners.
            pids = macos_ports.listening_pids(port)
        return pids


def default_port_lookup() -> PortLookup:
    return PsutilPortLookup()


class ProcessSource:
    def __init__(
        self,
        target: TargetConfig,
        nvml: NvmlSession | None,
        drm: bool = False,
        ports: PortLookup | None = None,
        clock=time.monotonic,
        refresh_s: float | None = None,
    ):
        self._target = target
        self._refresh_s = REFRESH_S if refresh_s is None else refresh_s
        self._nvml = nvml
        self._drm = drm_fdinfo.DrmUsage() if drm else None
        self.name = f"process:{target.display_name}"
        self._port = target_port(target.url)
        self._pattern = re.compile(target.process.pattern) if target.process.pattern else None
        self._ports = ports or default_port_lookup()
        self._clock = clock
        self._found: Found | None = None
        self._tree_cache: list[psutil.Process] = []
        self._address_cache: list[str] = []
        self._sockets: frozenset | None = None
        """The port's listening sockets when the tree and addresses were last read."""
        self._refreshed_at = float("-inf")
        self._down_sockets: frozenset | None = None
        """The port's sockets when a search last found nothing: unchanged, a down target is not searched again."""
        self._pattern_seen: set[int] = set()
        self._pattern_scanned_at = float("-inf")
        self._cpu_pids: dict[int, float] = {}
        self._gpu_pids: frozenset[int] = frozenset()
        self._last_pid: int | None = None
        self._last_name: str | None = None
        self._restarts = 0
        self._cpu_prev: tuple[float, float] | None = None
        self._state = StateLog(log)

    # -- finding the process
    def _find(self) -> psutil.Process | None:
        cfg = self._target.process
        if cfg.pid_file:
            return self._by_pid_file(cfg.pid_file)
        if self._pattern is not None:
            return self._by_pattern(self._pattern)
        return self._by_port()

    def _by_pid_file(self, path: str) -> psutil.Process | None:
        try:
            pid = int(Path(path).read_text().split()[0])
            return psutil.Process(pid)
        except (OSError, ValueError, IndexError, psutil.Error):
            return None

    def _by_pattern(self, pattern: re.Pattern[str]) -> psutil.Process | None:
        me = os.getpid()
        now = self._clock()
        pids = set(psutil.pids())
        if now - self._pattern_scanned_at >= PATTERN_RESCAN_S:
            self._pattern_seen.clear()
            self._pattern_scanned_at = now
        new = pids - self._pattern_seen
        self._pattern_seen = pids  # a pid that did not match is read again only after PATTERN_RESCAN_S
        matches = []
        for pid in new:
            if pid == me:
                continue
            try:
                proc = psutil.Process(pid)
                cmdline = proc.cmdline()
                if cmdline and pattern.search(" ".join(cmdline)):
                    matches.append((_start_time(proc), proc))
            except psutil.Error:
                continue
        if not matches:
            return None
        self._pattern_seen.clear()  # found: the next search (when it is gone) starts from scratch
        # The oldest match is the server; later ones are usually its own workers.
        return min(matches, key=lambda m: m[0])[1]

    def _by_port(self) -> psutil.Process | None:
        sockets = self._ports.sockets(self._port)
        if sockets is not None and (not sockets or sockets == self._down_sockets):
            return None  # nothing listens, or the same sockets a search already found no process for
        procs = []
        for pid in self._ports.pids(self._port):
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                continue
        self._down_sockets = None if procs else sockets
        # A forking server may share the socket with its workers: report the parent.
        return min(procs, key=_start_time, default=None)

    def _still_same(self) -> bool:
        found = self._found
        if found is None:
            return False
        try:
            return found.proc.is_running() and found.proc.create_time() == found.create_time
        except psutil.Error:
            return False

    # -- one sample
    def _tree(self, proc: psutil.Process) -> list[psutil.Process]:
        try:
            return [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return [proc]

    def _refresh(self, proc: psutil.Process) -> bool:
        """Re-read the children and listen addresses when due or when the port's sockets changed.
        False when a process found by its port no longer listens on it (search again)."""
        now = self._clock()
        sockets = self._ports.sockets(self._port)
        if sockets == self._sockets and now - self._refreshed_at < self._refresh_s:
            return True  # (a platform without the cheap check answers None: then every REFRESH_S)
        tree = self._tree(proc)
        addresses = self._addresses(tree)
        if not addresses and self._by_port_mode():
            if sockets is not None and not sockets:
                return False  # nothing listens on the port any more
            if not {p.pid for p in tree} & self._ports.pids(self._port):
                return False  # someone else does (its sockets were only unreadable to us: keep it)
        self._tree_cache, self._address_cache = tree, addresses
        self._sockets, self._refreshed_at = sockets, now
        return True

    def _by_port_mode(self) -> bool:
        cfg = self._target.process
        return not (cfg.pid_file or self._pattern is not None)

    def _addresses(self, tree: list[psutil.Process]) -> list[str]:
        for p in tree:
            try:
                ips = _listeners(_connections(p), self._port)
            except psutil.Error:
                continue
            if ips:
                return ips
        return []

    def _lose(self) -> None:
        self._found = None
        self._cpu_prev = None
        self._cpu_pids = {}
        self._sockets = None
        self._refreshed_at = float("-inf")

    def _locate(self, gpu_pids: frozenset[int]) -> None:
        """Keep the found process while it lives (and, found by its port, still listens there)."""
        if self._found is not None and gpu_pids != self._gpu_pids:
            self._refreshed_at = float("-inf")  # a new GPU user may be a new child: read the tree again
        self._gpu_pids = gpu_pids
        for _attempt in range(2):
            if self._found is None or not self._still_same():
                self._lose()
                proc = self._find()
                if proc is not None:
                    try:
                        self._found = Found(proc, proc.create_time())
                    except psutil.Error:
                        self._found = None
            if self._found is None or self._refresh(self._found.proc):
                return
            self._lose()  # it stopped listening on the port: whoever listens now is the server

    def _sample(self, time_ns: int) -> Metric:
        gpu = self._gpu_processes()
        self._locate(frozenset(gpu or ()))
        if self._found is None:
            return self._down(time_ns)
        proc = self._found.proc
        tree = self._tree_cache
        try:
            with proc.oneshot():  # another user's process: some readings are refused, the rest still count
                name = _safe(proc.name, None)
                rss = _safe(lambda: proc.memory_info().rss, None)
                threads = _safe(proc.num_threads, None)
                fds = _safe(proc.num_fds, None)
                cpu_pids: dict[int, float] = {}
                t = proc.cpu_times()
                cpu_pids[proc.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            self._lose()
            return self._down(time_ns)
        except psutil.Error:  # its CPU times refused
            pass
        tree_rss, tree_n = (rss, 1) if rss is not None else (0, 0)
        for p in tree[1:]:
            try:
                t = p.cpu_times()
                cpu_pids[p.pid] = t.user + t.system
                tree_rss += p.memory_info().rss  # one small /proc read per child (statm)
                tree_n += 1
            except psutil.NoSuchProcess:  # a worker that just exited: read the tree again next time
                self._refreshed_at = float("-inf")
            except psutil.Error:  # one we may not read
                continue
        if self._last_pid is not None and proc.pid != self._last_pid:
            self._restarts += 1
        self._last_pid, self._last_name = proc.pid, name
        self._state.ok("down", f"{self.name}: process found again (pid {proc.pid})")

        # CPU of the processes in both samples: a worker that came or went does not count as a jump
        common = cpu_pids.keys() & self._cpu_pids.keys()
        wall = time.monotonic()
        cpu = cpu_percent(
            None if self._cpu_prev is None else (self._cpu_prev[0], sum(self._cpu_pids[p] for p in common)),
            (wall, sum(cpu_pids[p] for p in common)),
        )
        self._cpu_prev, self._cpu_pids = (wall, 0.0), cpu_pids
        addresses = self._address_cache or self._table_addresses(proc)
        tree_pids = {p.pid for p in tree}
        gpu_mib, gpu_indices = self._gpu_memory(gpu, tree_pids)
        drm = self._drm.sample(tree_pids) if self._drm is not None else None
        if drm is not None and drm.vram_mib is not None:
            gpu_mib = (gpu_mib or 0.0) + drm.vram_mib
        fields = {
            "up": 1,
            "pid": proc.pid,
            "cpu_percent": cpu,
            "rss_bytes": rss,
            "tree_rss_bytes": tree_rss if tree_n else None,
            "tree_processes": tree_n or None,
            "num_threads": threads,
            "num_fds": fds,
            "uptime_s": max(0.0, time.time() - self._found.create_time),
            "restarts_total": self._restarts,
            "gpu_memory_used_mib": gpu_mib,
            "gpu_indices": gpu_indices,
            "gpu_busy_percent": drm.busy_percent if drm is not None else None,
            "listen_address": ",".join(format_address(ip, self._port) for ip in addresses) or None,
            "exposed": (1 if any(not is_loopback_address(ip) for ip in addresses) else 0) if addresses else None,
        }
        return Metric("llm_process", self._tags(name), clean_fields(fields), time_ns)

    def _table_addresses(self, proc: psutil.Process) -> list[str]:
        """Its own sockets hidden from us (another user's): its user's listeners on the port, from the socket
        table anyone may read, so `listen_address` and `exposed` are still true."""
        try:
            return table_addresses(self._port, proc.uids().real)
        except psutil.Error:
            return []

    def _gpu_processes(self) -> dict[int, dict[int, float]] | None:
        if self._nvml is None or not self._nvml.available:
            return None
        return self._nvml.process_gpu_memory()

    @staticmethod
    def _gpu_memory(gpu: dict[int, dict[int, float]] | None, pids: set[int]) -> tuple[float | None, str | None]:
        if gpu is None:
            return None, None
        total = 0.0
        indices: set[int] = set()
        for pid, per_gpu in gpu.items():
            if pid in pids:
                total += sum(per_gpu.values())
                indices.update(per_gpu)
        return total, ",".join(str(i) for i in sorted(indices)) or None

    def _down(self, time_ns: int) -> Metric:
        how = self._how()
        if self._last_pid is not None:
            self._state.fail("down", f"{self.name}: process {self._last_pid} is gone ({how})")
        else:
            self._state.fail("down", f"{self.name}: no process found ({how})")
        return Metric("llm_process", self._tags(self._last_name), {"up": 0, "restarts_total": self._restarts}, time_ns)

    def _how(self) -> str:
        cfg = self._target.process
        if cfg.pid_file:
            return f"pid_file {cfg.pid_file}"
        if cfg.pattern:
            return f"pattern {cfg.pattern!r}"
        return hidden_listener(self._port) or f"nothing listening on port {self._port}"

    def _tags(self, process_name: str | None) -> dict[str, str]:
        tags = {"target": self._target.display_name, "server_type": self._target.type}
        if process_name:
            tags["process_name"] = process_name
        return tags

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        return [await asyncio.to_thread(self._sample, ctx.time_ns)]

    async def close(self) -> None:
        return None


def _safe(call, default):
    """call(), or default when psutil is refused access (a vanished process still raises)."""
    try:
        return call()
    except psutil.AccessDenied:
        return default


def _connections(proc: psutil.Process) -> list:
    """The process's TCP sockets (psutil >= 6 calls it net_connections, older ones connections)."""
    method = getattr(proc, "net_connections", None) or proc.connections
    return method("tcp")


def _start_time(proc: psutil.Process) -> float:
    try:
        return proc.create_time()
    except psutil.Error:
        return float("inf")


class DiscoveredProcesses:
    """No `targets:` in the config: follow the process of every server discovery finds (all local)."""

    name = "process:discovered"

    def __init__(
        self,
        discovered: list[TargetConfig],
        nvml: NvmlSession | None,
        drm: bool = False,
        refresh_s: float | None = None,
    ):
        self._discovered = discovered
        self._nvml = nvml
        self._drm = drm
        self._refresh_s = refresh_s
        self._sources: dict[str, ProcessSource] = {}

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        for target in list(self._discovered):
            if target.url not in self._sources and target.process.enabled:
                self._sources[target.url] = ProcessSource(target, self._nvml, self._drm, refresh_s=self._refresh_s)
        results = await asyncio.gather(*(s.gather(ctx) for s in self._sources.values()), return_exceptions=True)
        metrics: list[Metric] = []
        for result in results:
            if isinstance(result, BaseException):
                log.warning("process of a discovered server: %s", result)
            else:
                metrics.extend(result)
        return metrics

    async def close(self) -> None:
        for source in self._sources.values():
            await source.close()


def build(config: Config, env: SourceEnv) -> list[Source]:
    """One source per configured target whose process we can see: local URLs, or an explicit pid_file/pattern.
    Without `targets:`, one source that follows what discovery finds."""
    nvml = env.nvml_session() if config.gpu.enabled is not False and config.gpu.wants("nvidia") else None
    drm = drm_fdinfo.wanted(config.gpu, sys.platform)
    if config.targets is None:
        return (
            [DiscoveredProcesses(env.discovered_targets, nvml, drm, env.process_refresh_s)]
            if config.discovery.enabled
            else []
        )
    sources: list[Source] = []
    for target in config.targets or []:
        cfg = target.process
        if not cfg.enabled:
            continue
        explicit = bool(cfg.pid_file or cfg.pattern)
        if explicit or is_local_host(urlsplit(target.url).hostname or ""):
            sources.append(ProcessSource(target, nvml, drm, refresh_s=env.process_refresh_s))
    return sources
