"""Where a model server's own log is, found without config.

In this order: the target's `log:` key; else, from the process listening on the target's port: the file its
command line names (`llama-server --log-file FILE`), the file its output is redirected to (`> llama.log 2>&1`,
nohup, a unit's `StandardOutput=append:FILE`), its systemd service's journal (`/proc/PID/cgroup`), or its
Docker container's json-file log; else the server's documented default file (`DEFAULT_FILES`: Ollama's
`~/.ollama/logs/server.log` of the server's user).
A server started in a terminal (a session scope) writes to that terminal: nothing to find, no log is read.
Only a process that is the server itself (its name says `ollama`, `llama-server`) is followed to its log: the
unit of a proxy in front of it, or of `docker-proxy`, holds some other program's lines.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import stat
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import psutil

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.sources.process import default_port_lookup, is_local_host, target_port

DOCKER_ROOT = "/var/lib/docker/containers"
DEFAULT_FILES = {"ollama": ".ollama/logs/server.log"}
"""Per server type: the log file under its user's home (Ollama's macOS app and install script default)."""
STREAMS = {"ollama": (1,), "llamacpp": (2,)}
"""Per server type, the output that holds its request lines: Ollama's access lines go to stdout (gin's default
writer; its own lines to stderr), llama-server writes everything to stderr. Only that one: a file with the other's
lines alone would give requests/s 0 under traffic."""
LOG_FILE_FLAGS = {"llamacpp": "--log-file"}
"""Per server type: the command-line flag that names its log file (`llama-server --log-file FILE`)."""
PROCESS_TYPES = (("ollama", "ollama"), ("llama-server", "llamacpp"))
"""A process name containing the first is the second server type (`type: auto` targets)."""

_SERVICE = re.compile(r"^(?:\d+:[^:]*:)?(?P<path>/\S*)$")
_DOCKER = re.compile(r"(?:docker-|/docker/)(?P<id>[0-9a-f]{64})(?:\.scope)?$")


@dataclass(frozen=True)
class LogLocation:
    kind: Literal["file", "journal", "docker"]
    path: str = ""
    """file, docker: the file."""
    unit: str = ""
    """journal: the systemd unit."""
    user_unit: bool = False
    """journal: a user unit (`user@UID.service/...`)."""

    def describe(self) -> str:
        if self.kind == "journal":
            return f"the journal of {'user unit ' if self.user_unit else ''}{self.unit}"
        return f"{'Docker log ' if self.kind == 'docker' else ''}{self.path}"


def from_key(value: str, docker_root: str = DOCKER_ROOT) -> LogLocation | None:
    """The `log:` key: a file, `journal:UNIT`, `docker:ID` or a `*-json.log` path; None for `none`."""
    value = value.strip()
    if value.lower() == "none":
        return None
    if value.startswith("journal:"):
        unit = value.split(":", 1)[1]
        return LogLocation("journal", unit=unit if "." in unit else f"{unit}.service")
    if value.startswith("docker:"):
        ident = value.split(":", 1)[1]
        if "/" in ident:
            return LogLocation("docker", path=ident)
        found = sorted(glob.glob(os.path.join(docker_root, f"{glob.escape(ident)}*", "*-json.log")))
        return LogLocation("docker", path=found[0] if found else os.path.join(docker_root, ident, f"{ident}-json.log"))
    if value.endswith("-json.log"):
        return LogLocation("docker", path=value)
    return LogLocation("file", path=os.path.expanduser(value))


def from_cgroup(text: str, docker_root: str = DOCKER_ROOT) -> LogLocation | None:
    """The log a process's `/proc/PID/cgroup` points to: its service's journal, or its container's log."""
    for line in text.splitlines():
        m = _SERVICE.match(line.strip())
        if m is None:
            continue
        parts = [p for p in m["path"].split("/") if p]
        if not parts:
            continue
        last = parts[-1]
        docker = _DOCKER.search(m["path"])
        if docker is not None:
            ident = docker["id"]
            return LogLocation("docker", path=os.path.join(docker_root, ident, f"{ident}-json.log"))
        if last.endswith(".service"):
            user = any(p.startswith("user@") and p.endswith(".service") for p in parts[:-1])
            return LogLocation("journal", unit=last, user_unit=user)
    return None


def log_file_arg(argv: list[str], cwd: str, flag: str = "--log-file") -> str | None:
    """The file `flag FILE` / `flag=FILE` names in a command line (relative to the process's `cwd`), else None."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == flag and i + 1 < len(argv) else None
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        if value:
            return os.path.join(cwd, value)
    return None


def _own_log_file(proc: psutil.Process, kind: str | None) -> str | None:
    flag = LOG_FILE_FLAGS.get(kind or "")
    if flag is None:
        return None
    try:
        argv = proc.cmdline()
        if not any(a == flag or a.startswith(flag + "=") for a in argv):
            return None
        return log_file_arg(argv, proc.cwd(), flag)
    except psutil.Error:
        return None


def output_file(pid: int, fds: tuple[int, ...]) -> str | None:
    """The regular file the first of `fds` is redirected to; None for a terminal, a pipe, the journal's socket,
    /dev/null, a deleted file, or where /proc is not (macOS) or not ours to read."""
    for fd in fds:
        link = f"/proc/{pid}/fd/{fd}"
        try:
            if not stat.S_ISREG(os.stat(link).st_mode):
                continue
            path = os.readlink(link)
        except OSError:
            continue
        if path.startswith("/") and not path.endswith(" (deleted)"):
            return path
    return None


def server_type_of(name: str) -> str | None:
    """The server type a process name says (`type: auto` targets), else None."""
    for needle, kind in PROCESS_TYPES:
        if needle in name:
            return kind
    return None


@dataclass(frozen=True)
class Found:
    location: LogLocation | None
    server_type: str | None
    """The target's type, or what its process's name says (`type: auto`)."""


def listening_process(target: TargetConfig) -> psutil.Process | None:
    if not is_local_host(urlsplit(target.url).hostname or ""):
        return None
    procs = []
    for pid in default_port_lookup().pids(target_port(target.url)):
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return min(procs, key=lambda p: p.create_time(), default=None) if procs else None


def locate(target: TargetConfig, proc: psutil.Process | None) -> Found:
    """Where this target's log is (None: nowhere we can tell) and its server type."""
    kind: str | None = target.type
    name = ""
    if proc is not None:
        try:
            name = proc.name()
        except psutil.Error:
            pass
    if kind == "auto":
        kind = server_type_of(name)
    if target.log is not None:
        return Found(from_key(target.log), kind)
    if proc is None or server_type_of(name) != kind:
        # Not the server itself (a proxy in front, docker-proxy, a test's fake): its unit's log is not the server's.
        return Found(None, kind)
    own = _own_log_file(proc, kind) or output_file(proc.pid, STREAMS.get(kind or "", ()))
    if own is not None:
        return Found(LogLocation("file", path=own), kind)
    try:
        with open(f"/proc/{proc.pid}/cgroup") as fh:
            location = from_cgroup(fh.read())
    except OSError:
        location = None
    if location is not None:
        return Found(location, kind)
    home_file = DEFAULT_FILES.get(kind or "")
    if home_file:
        try:
            home = pwd.getpwuid(proc.uids().real).pw_dir
        except (KeyError, psutil.Error):
            home = None
        if home:
            return Found(LogLocation("file", path=os.path.join(home, home_file)), kind)
    return Found(None, kind)
