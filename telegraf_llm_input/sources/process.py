"""`llm_process`: the model server's own process: is it up, did it restart, what does it hold.

Found by `process.pid_file`, `process.pattern`, or (default, local targets only) as whoever listens
on the target's port. Once found, the process is re-checked cheaply each gather (same pid, same
start time); the full search runs only when it is gone.
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
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psutil

from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import Metric, clean_fields
from telegraf_llm_input.sources import drm_fdinfo, macos_ports
from telegraf_llm_input.sources.base import GatherContext, SourceEnv
from telegraf_llm_input.sources.gpu import NvmlSession, nvml_session
from telegraf_llm_input.targets import TargetConfig

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config

log = get_logger("process")

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


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
    return sorted({c.laddr.ip for c in conns
                   if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port})


class ProcessSource:
    def __init__(self, target: TargetConfig, nvml: NvmlSession | None, drm: bool = False):
        self._target = target
        self._nvml = nvml
        self._drm = drm_fdinfo.DrmUsage() if drm else None
        self.name = f"process:{target.display_name}"
        self._port = target_port(target.url)
        self._pattern = re.compile(target.process.pattern) if target.process.pattern else None
        self._found: Found | None = None
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
        matches = []
        for proc in psutil.process_iter(["cmdline", "create_time"]):
            cmdline = proc.info.get("cmdline")
            if proc.pid == me or not cmdline:
                continue
            if pattern.search(" ".join(cmdline)):
                matches.append(proc)
        # The oldest match is the server; later ones are usually its own workers.
        return min(matches, key=lambda p: p.info.get("create_time") or 0.0, default=None)

    def _by_port(self) -> psutil.Process | None:
        pids: set[int] = set()
        try:
            for c in psutil.net_connections("tcp"):
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self._port and c.pid:
                    pids.add(c.pid)
        except psutil.AccessDenied:
            pass
        if not pids:
            # net_connections may be refused, or show the socket without its pid (another user's
            # process): ask each process we are allowed to inspect.
            for proc in psutil.process_iter():
                try:
                    if _listeners(_connections(proc), self._port):
                        pids.add(proc.pid)
                except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                    continue
        if not pids and macos_ports.use_lsof(sys.platform):
            # macOS without root: psutil is refused what lsof still shows of the user's own listeners.
            pids = macos_ports.listening_pids(self._port)
        procs = []
        for pid in pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                continue
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

    def _addresses(self, tree: list[psutil.Process]) -> list[str]:
        for p in tree:
            try:
                ips = _listeners(_connections(p), self._port)
            except psutil.Error:
                continue
            if ips:
                return ips
        return []

    def _sample(self, time_ns: int) -> Metric:
        if not self._still_same():
            self._found = None
            self._cpu_prev = None
            proc = self._find()
            if proc is not None:
                try:
                    self._found = Found(proc, proc.create_time())
                except psutil.Error:
                    self._found = None
        if self._found is None:
            return self._down(time_ns)
        proc = self._found.proc
        try:
            with proc.oneshot():  # another user's process: some readings are refused, the rest still count
                name = _safe(proc.name, None)
                rss = _safe(lambda: proc.memory_info().rss, None)
                threads = _safe(proc.num_threads, None)
                fds = _safe(proc.num_fds, None)
            tree = self._tree(proc)
            cpu_s = 0.0
            for p in tree:
                try:
                    t = p.cpu_times()
                    cpu_s += t.user + t.system
                except psutil.Error:  # a worker that just exited, or one we may not read
                    continue
        except psutil.NoSuchProcess:
            self._found = None
            return self._down(time_ns)
        if self._last_pid is not None and proc.pid != self._last_pid:
            self._restarts += 1
        self._last_pid, self._last_name = proc.pid, name
        self._state.ok("down", f"{self.name}: process found again (pid {proc.pid})")

        now = (time.monotonic(), cpu_s)
        cpu = cpu_percent(self._cpu_prev, now)
        self._cpu_prev = now
        addresses = self._addresses(tree)
        gpu_mib, gpu_indices = self._gpu_memory({p.pid for p in tree})
        drm = self._drm.sample({p.pid for p in tree}) if self._drm is not None else None
        if drm is not None and drm.vram_mib is not None:
            gpu_mib = (gpu_mib or 0.0) + drm.vram_mib
        fields = {
            "up": 1,
            "pid": proc.pid,
            "cpu_percent": cpu,
            "rss_bytes": rss,
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

    def _gpu_memory(self, pids: set[int]) -> tuple[float | None, str | None]:
        if self._nvml is None or not self._nvml.available:
            return None, None
        total = 0.0
        indices: set[int] = set()
        for pid, per_gpu in self._nvml.process_gpu_memory().items():
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
        return Metric("llm_process", self._tags(self._last_name),
                      {"up": 0, "restarts_total": self._restarts}, time_ns)

    def _how(self) -> str:
        cfg = self._target.process
        if cfg.pid_file:
            return f"pid_file {cfg.pid_file}"
        if cfg.pattern:
            return f"pattern {cfg.pattern!r}"
        return f"nothing listening on port {self._port}"

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

    def __init__(self, discovered: list[TargetConfig], nvml: NvmlSession | None, drm: bool = False):
        self._discovered = discovered
        self._nvml = nvml
        self._drm = drm
        self._sources: dict[str, ProcessSource] = {}

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        for target in list(self._discovered):
            if target.url not in self._sources and target.process.enabled:
                self._sources[target.url] = ProcessSource(target, self._nvml, self._drm)
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


def build(config: Config, env: SourceEnv) -> list[ProcessSource | DiscoveredProcesses]:
    """One source per configured target whose process we can see: local URLs, or an explicit pid_file/pattern.
    Without `targets:`, one source that follows what discovery finds."""
    nvml = nvml_session(env) if config.gpu.enabled is not False and config.gpu.wants("nvidia") else None
    drm = drm_fdinfo.wanted(config.gpu, sys.platform)
    if config.targets is None:
        return [DiscoveredProcesses(env.discovered_targets, nvml, drm)] if config.discovery.enabled else []
    sources: list[ProcessSource | DiscoveredProcesses] = []
    for target in config.targets or []:
        cfg = target.process
        if not cfg.enabled:
            continue
        explicit = bool(cfg.pid_file or cfg.pattern)
        if explicit or is_local_host(urlsplit(target.url).hostname or ""):
            sources.append(ProcessSource(target, nvml, drm))
    return sources
