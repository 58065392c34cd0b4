"""What this user can see of each model server: its process, its sockets, per-process GPU memory, its log in
the journal, and the request logs the config names; for each "no", the grant that fixes it
(`sources/visibility.py`: measured, documented in docs/deploy.md)."""

from __future__ import annotations

import glob
import grp
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from telegraf_llm_input.config import Config
from telegraf_llm_input.doctor.report import Check, no, note, ok
from telegraf_llm_input.doctor.servers import Server
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.serverlogs import FORMATS
from telegraf_llm_input.sources import drm_fdinfo, logfind
from telegraf_llm_input.sources.base import GatherContext, SourceEnv
from telegraf_llm_input.sources.process import ProcessSource, is_local_host, target_port
from telegraf_llm_input.sources.serverlog import unreadable
from telegraf_llm_input.sources.visibility import JOURNAL_GRANT, PROCESS_GRANT, hidden_socket, user_name

AREA = "what this user can see"
CAPS = {2: "CAP_DAC_READ_SEARCH", 19: "CAP_SYS_PTRACE"}
"""The capabilities that matter here, by bit number (linux/capability.h)."""
JOURNAL_DIRS = ("/var/log/journal", "/run/log/journal")
JOURNAL_GROUPS = ("systemd-journal", "adm", "wheel")


def capabilities(status: str | None = None) -> list[str]:
    """The effective capabilities of this process among CAPS (Linux: /proc/self/status CapEff)."""
    if status is None:
        try:
            status = Path("/proc/self/status").read_text()
        except OSError:
            return []
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            bits = int(line.split()[1], 16)
            return [name for bit, name in CAPS.items() if bits >> bit & 1]
    return []


def who() -> str:
    """`user nobody (uid 65534), groups ..., capabilities ...`: what the checks below depend on."""
    uid = os.geteuid()
    groups = sorted({_group(g) for g in os.getgroups()} | {_group(os.getegid())})
    caps = "all (root)" if uid == 0 else (", ".join(capabilities()) or "none")
    return f"user {user_name(uid)} (uid {uid}), groups {', '.join(groups)}, capabilities {caps}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


async def processes(servers: list[Server], env: SourceEnv, gpu_used: bool, config: Config) -> list[Check]:
    checks: list[Check] = []
    drm = drm_fdinfo.wanted(config.gpu, sys.platform)
    nvml = env.nvml if env.nvml is not None and env.nvml.available else None
    for server in servers:
        target = server.target
        if not target.process.enabled:
            continue
        name = target.name or f"port {target_port(target.url)}"
        local = is_local_host(urlsplit(target.url).hostname or "")
        if not local and not (target.process.pid_file or target.process.pattern):
            checks.append(note(AREA, f"{name}: on another machine: its process is not watched from here"))
            continue
        source = ProcessSource(target, nvml, drm)
        (point,) = await source.gather(GatherContext(time_ns=time.time_ns(), deadline_s=10.0))
        checks += _process(name, target_port(target.url), point, gpu_used, nvml is not None, drm, server.up)
    return checks


def _process(
    name: str, port: int, point: Metric, gpu_used: bool, nvml: bool, drm: bool, answers: bool = True
) -> list[Check]:
    f = point.fields
    if not f.get("up"):
        hidden = hidden_socket(port)
        if hidden:
            out = [no(AREA, f"{name}: {hidden}", PROCESS_GRANT)]
            if gpu_used:
                out.append(
                    no(AREA, f"{name}: per-process GPU memory: not visible while its process is hidden", PROCESS_GRANT)
                )
            return out
        if not answers:  # down, and nothing listens: "model servers" above says so, with its fix
            return [note(AREA, f"{name}: nothing on this host listens on port {port}: no process to watch yet")]
        if sys.platform == "darwin":
            return [
                no(
                    AREA,
                    f"{name}: answers on port {port}, but its process is not one this user may inspect (macOS shows "
                    "only your own processes' sockets without root)",
                    "run the agent as the server's user (a LaunchAgent of that user), or set process.pid_file",
                )
            ]
        return [
            no(
                AREA,
                f"{name}: answers, but no socket on this host listens on port {port} (a container or another "
                "network namespace?): its process is not watched",
                "set process.pid_file or process.pattern for the target, or run the agent where the server runs",
                blocking=False,
            )
        ]
    pid = int(f["pid"])
    owner = _owner(pid)
    what = f"process {pid} ({point.tags.get('process_name', '?')}, user {owner})"
    out = []
    if "listen_address" in f and "num_fds" in f:
        out.append(ok(AREA, f"{name}: {what} and its sockets ({f['listen_address']})"))
    elif "listen_address" in f:
        out.append(
            no(
                AREA,
                f"{name}: {what} found, its listen address ({f['listen_address']}) only from the socket table: its "
                "open files are hidden (no num_fds)",
                PROCESS_GRANT,
            )
        )
    else:
        out.append(
            no(
                AREA,
                f"{name}: {what} found, but its sockets and open files are hidden: no listen_address, exposed, num_fds",
                PROCESS_GRANT,
            )
        )
    if nvml:
        out.append(ok(AREA, f"{name}: per-process GPU memory from NVML ({f.get('gpu_memory_used_mib', 0):g} MiB)"))
    elif drm:
        if drm_fdinfo.process_clients(pid) is None:
            out.append(
                no(AREA, f"{name}: per-process GPU memory: the DRM fdinfo of process {pid} is hidden", PROCESS_GRANT)
            )
        else:
            out.append(ok(AREA, f"{name}: per-process GPU memory from DRM fdinfo of process {pid}"))
    elif gpu_used:
        out.append(note(AREA, f"{name}: per-process GPU memory: none from this GPU backend"))
    return out


def _owner(pid: int) -> str:
    try:
        return psutil.Process(pid).username()
    except (psutil.Error, KeyError):
        return "?"


def journal(config: Config) -> list[Check]:
    """Whether the system journal (where a model server under systemd logs: `journalctl -u ollama`) is readable;
    a "no" blocks when a target's `log: journal:UNIT` needs it, else it only matters for the found-by-default log."""
    if not sys.platform.startswith("linux"):
        return []
    units = [t.log.removeprefix("journal:") for t in config.targets or [] if t.log and t.log.startswith("journal:")]
    readable, how = _journal_readable()
    what = f"the journal of {', '.join(units)}" if units else "the system journal (model servers' logs under systemd)"
    if readable:
        return [ok(AREA, f"{what}: readable ({how})")]
    return [no(AREA, f"{what}: not readable ({how})", JOURNAL_GRANT, blocking=bool(units))]


NO_LOG_FIX = {
    "llamacpp": "start llama-server with --log-file FILE (found from its command line) or its output redirected to a "
    "file (`2> FILE`), or under systemd (its journal)",
    "ollama": "set the target's log: to where Ollama writes (a file, journal:UNIT or docker:ID)",
}


def server_logs(servers: list[Server]) -> list[Check]:
    """Where the agent finds each Ollama / llama.cpp server's own log without a `log:` key (`sources/logfind.py`),
    and whether this user may read it: without it there are no requests/s, latency or errors for that server. A
    found journal or file this user cannot read blocks (the exit status), as a `log:` the config names does."""
    checks: list[Check] = []
    for server in servers:
        target = server.target
        kind = server.server_type
        if kind not in FORMATS or target.log is not None or not is_local_host(urlsplit(target.url).hostname or ""):
            continue
        name = target.name or f"port {target_port(target.url)}"
        proc = logfind.listening_process(target)
        found = logfind.locate(target, proc).location
        if found is None and proc is None and not server.up and not hidden_socket(target_port(target.url)):
            checks.append(note(AREA, f"{name}: its log is looked for once the server runs (it is down)"))
        elif found is None and proc is None and hidden_socket(target_port(target.url)):
            text = f"{name}: its log cannot be found while its process is hidden: no requests/s, latency or errors"
            checks.append(no(AREA, text, PROCESS_GRANT, blocking=False))
        elif found is None:
            checks.append(
                no(
                    AREA,
                    f"{name}: its log is nowhere to be found (not in a systemd service or container, its output not "
                    "redirected to a file, no default file; started in a terminal, it writes there): no requests/s, "
                    "latency or errors from it",
                    NO_LOG_FIX.get(kind, "set the target's log: to where the server writes its log"),
                    blocking=False,
                )
            )
        elif found.kind == "journal":  # the agent reads it by default: unreadable, that part cannot work
            readable, _ = _journal_readable()
            text = f"{name}: its log: {found.describe()}"
            checks.append(ok(AREA, text) if readable else no(AREA, f"{text}: not readable", JOURNAL_GRANT))
        elif not os.path.exists(found.path):
            checks.append(
                note(AREA, f"{name}: its log {found.describe()}: no such file yet (followed once it appears)")
            )
        else:
            denied = unreadable(found)
            text = f"{name}: its log: {found.describe()}"
            checks.append(ok(AREA, text) if denied is None else no(AREA, f"{text}: not readable", denied))
    return checks


def _journal_readable() -> tuple[bool, str]:
    """(readable by this user, how that was told)."""
    files = [f for d in JOURNAL_DIRS for f in glob.glob(f"{d}/*/*.journal")]
    if files:
        try:
            with open(files[0], "rb"):
                return True, f"{len(files)} journal file(s)"
        except OSError:
            return False, f"{len(files)} journal file(s)"
    member = set(os.getgroups()) | {os.getegid()}
    groups = {g for g in JOURNAL_GROUPS if _gid(g) in member}
    readable = os.geteuid() == 0 or bool(groups) or "CAP_DAC_READ_SEARCH" in capabilities()
    return readable, "no journal files here yet; by group and capabilities"


def _gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def request_logs(config: Config) -> list[Check]:
    """The `logs:` entries and the targets' `log:` files: readable by this user?"""
    checks = []
    files = [(e.path, e.path, "") for e in config.logs]
    for t in config.targets or []:
        where = logfind.from_key(t.log) if t.log else None
        if where is not None and where.kind == "file":
            files.append((where.path, where.path, ""))
        elif where is not None and where.kind == "docker":  # `docker:ID`: the container's json-file log
            files.append((f"{t.log} ({where.path})", where.path, "; a container logging with json-file writes it"))
    for label, path_glob, more in files:
        paths = sorted(glob.glob(path_glob))
        if not paths:
            closed = _closed_parent(path_glob)
            if closed is not None:
                checks.append(no(AREA, f"log {label}: cannot look into {closed}", _file_fix(closed)))
            else:
                checks.append(note(AREA, f"log {label}: no such file yet (followed once it appears{more})"))
            continue
        for path in paths:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                checks.append(no(AREA, f"log {path}: {exc.strerror}", _file_fix(path)))
            else:
                checks.append(ok(AREA, f"log {path}: readable"))
    return checks


def _closed_parent(pattern: str) -> str | None:
    """The first directory above `pattern` this user may not search (a file in it is invisible, not absent)."""
    parts = Path(pattern).parts
    for i in range(2, len(parts)):
        parent = Path(*parts[:i])
        if glob.has_magic(str(parent)):
            return None
        if parent.is_dir() and not _searchable(parent):
            return str(parent)
    return None


def _searchable(directory: Path) -> bool:
    """Looking up `dir/.`, not access(2), which ignores a non-root user's capabilities (CAP_DAC_READ_SEARCH)."""
    try:
        os.stat(os.path.join(directory, "."))  # pathlib would drop the "."
    except PermissionError:
        return False
    except OSError:
        return True  # gone a moment later: nothing closed here
    return True


def _file_fix(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "make the file readable by the agent's user"
    group = _group(st.st_gid)
    return (
        f"{path} is {user_name(st.st_uid)}:{group} mode {st.st_mode & 0o777:o}: add the agent's user to group "
        f"{group} (SupplementaryGroups={group}) and make it group-{'searchable' if Path(path).is_dir() else 'readable'}"
    )
