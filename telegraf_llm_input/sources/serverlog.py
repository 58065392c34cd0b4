"""`llm_server` requests/s, latency, errors and model loads from a model server's own log (Ollama, llama.cpp).

Neither server has request histograms (Ollama has no metrics page at all), but both log every finished request:
these points carry the fields vLLM's histograms give, same names and meaning, exact over the interval's
requests. Lines count in the interval in which they are read; positions (file offsets, journal cursor) and the
last interval's end are kept in `state_dir`, so an agent restart neither loses nor counts a line twice. The
probe's own requests are left out (`owntraffic.py`); scrapes are no inference paths (serverlogs/ollama.py).

Where the log is: `logfind.py`. A log that exists but cannot be read gets one `I!` line saying what to
grant, and no points; nothing else fails. Points: tags `target`, `server_type`, and for Ollama `api`
(`generate`, `embed`) on request fields; Ollama's model loads on a point without `api`.
"""

from __future__ import annotations

import asyncio
import getpass
import grp
import hashlib
import json
import logging
import os
import pwd
import re
import stat
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.journal import JournalDenied, JournalError, JournalReader, JournalSpec
from telegraf_llm_input.log import StateLog, get_logger
from telegraf_llm_input.metric import Metric
from telegraf_llm_input.serverlogs import FORMATS
from telegraf_llm_input.serverlogs.base import GENERATE, Event, Parser
from telegraf_llm_input.serverlogs.interval import Interval
from telegraf_llm_input.serverlogs.sniff import Sniffer
from telegraf_llm_input.sources import logfind
from telegraf_llm_input.sources.base import GatherContext, ProbeLedger, Source, SourceEnv
from telegraf_llm_input.sources.owntraffic import OwnTraffic
from telegraf_llm_input.tailer import FileLines, Tailer

if TYPE_CHECKING:  # config.py imports the sections defined beside the sources: a type-only import, no cycle
    from telegraf_llm_input.config import Config

log = get_logger("serverlog")

MEASUREMENT = "llm_server"
MAX_READ = 16 * 1024 * 1024
"""Bytes of log read per gather at most; a backlog is worked off over several gathers."""
TIME_SHARE = 0.5
"""Share of the gather deadline spent reading and parsing."""
MAX_JOINED = 1024 * 1024
"""The longest line put back together from Docker's 16 KiB parts."""
LOCATE_EVERY_S = 60.0
"""How often a target whose log was not found is looked at again."""


class LineReader(Protocol):
    def read(self, max_bytes: int) -> list[str]: ...

    def there(self) -> bool:
        """The log exists (a missing file gives no points: zero requests would be a lie)."""
        ...

    def close(self) -> None: ...


class FileLog:
    """A plain log file, followed like `tail -F` (rotation, truncation, copytruncate: tailer.py)."""

    def __init__(self, path: str, state_path: Path | None, record_end: Callable[[bytes], bool] | None = None):
        self.path = path
        self._tailer = Tailer(path, "end", MAX_READ, state_path, record_end=record_end)

    def read(self, max_bytes: int) -> list[str]:
        out: list[str] = []
        for batch in self._tailer.read(max_bytes):
            out.extend(self.lines(batch))
        self._tailer.save_state()
        notes, self._tailer.notes = self._tailer.notes, []
        for note in notes:  # lines lost to a rotation: said once each
            log.warning("serverlog: %s", note)
        return out

    def lines(self, batch: FileLines) -> list[str]:
        return [line.decode("utf-8", "replace") for line in batch.lines]

    def there(self) -> bool:
        return os.path.exists(self.path)

    def close(self) -> None:
        self._tailer.close()


class DockerLog(FileLog):
    """Docker's json-file log: one JSON object per line, the container's output in `log`. Docker cuts an output
    line longer than 16 KiB into several records, and only the last one's `log` ends in `\n` (moby's jsonfilelog
    `marshalMessage`): the parts are joined again (up to MAX_JOINED; a longer line is no line we read). Where a
    line not yet complete began is the tailer's `unfinished`: the position saved for the next run stays before its
    first part (across a rotation too), and a first start at the log's end starts before it: the line is read
    whole, never its tail alone."""

    def __init__(self, path: str, state_path: Path | None):
        super().__init__(path, state_path, self.ends_line)
        self._parts: list[str] = []
        self._parts_len = 0

    def lines(self, batch: FileLines) -> list[str]:
        out = []
        mark = self._tailer.unfinished if self._parts_len else None
        offset = batch.start
        for line in batch.lines:
            at, offset = offset, offset + len(line) + 1
            text = self.text(line)
            if text is None:
                continue
            if not self._parts_len:
                mark = (batch.ident, at)  # a line begins
            self._parts_len += len(text)
            self._parts = [*self._parts, text] if self._parts_len <= MAX_JOINED else []  # too long: dropped whole
            if not text.endswith("\n"):  # a part of a longer line: the rest follows
                continue
            mark = None
            if self._parts:
                out.append("".join(self._parts).rstrip("\n"))
            self._parts, self._parts_len = [], 0
        self._tailer.unfinished = mark
        return out

    @classmethod
    def ends_line(cls, line: bytes) -> bool:
        """The record ends an output line (its `log` ends in `\n`), or is no record: no part of a line."""
        text = cls.text(line)
        return text is None or text.endswith("\n")

    @staticmethod
    def text(line: bytes) -> str | None:
        """The record's `log` as written (with its `\n` when the line ended there); None when not a record."""
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        text = rec.get("log") if isinstance(rec, dict) else None
        return text if isinstance(text, str) else None


class JournalLog:
    def __init__(self, spec: JournalSpec, state_path: Path | None):
        self._reader = JournalReader(spec, state_path)

    def read(self, max_bytes: int) -> list[str]:
        return self._reader.read(max_bytes)

    def there(self) -> bool:
        return True

    def close(self) -> None:
        pass


def state_paths(state_dir: Path | None, target: TargetConfig, where: logfind.LogLocation) -> tuple[Path, Path] | None:
    """(the reader's positions, the last interval's end) under `state_dir/serverlog/`."""
    if state_dir is None:
        return None
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", target.display_name).strip("_")[:60] or "target"
    digest = hashlib.sha1(f"{target.display_name}\0{where.describe()}".encode()).hexdigest()[:12]
    folder, name = state_dir / "serverlog", f"{label}-{digest}"  # a label may hold dots: no with_suffix
    return folder / f"{name}.pos.json", folder / f"{name}.interval.json"


def _opens(path: str) -> bool:
    """Opening, not access(2): access ignores a non-root user's capabilities (the shipped unit's
    CAP_DAC_READ_SEARCH reads a root-owned 0600 file that access says it may not)."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        return False
    return True


def unreadable(where: logfind.LogLocation) -> str | None:
    """What to grant when the log exists but this user may not read it (None: readable, or not there yet)."""
    if where.kind == "journal":
        return None  # journalctl says so when asked (JournalDenied)
    me = getpass.getuser()
    path = where.path
    try:
        st = os.stat(path)
    except PermissionError:
        parent = os.path.dirname(path)
        while parent and parent != "/" and os.access(parent, os.X_OK):
            parent = os.path.dirname(parent)
        return (
            f"{path} is in a directory the agent's user {me} may not enter ({parent or path}): grant it, e.g. "
            f"`sudo setfacl -m u:{me}:x {parent}` for each directory on the way and `sudo setfacl -m u:{me}:r {path}`"
        )
    except OSError:
        return None
    if _opens(path):
        return None
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        owner, group = str(st.st_uid), str(st.st_gid)
    return (
        f"{path} (owner {owner}:{group}, mode {stat.S_IMODE(st.st_mode):04o}) is not readable by the agent's user "
        f"{me}: grant read access, e.g. `sudo setfacl -m u:{me}:r {path}`"
        + (" (or add it to that group)" if stat.S_IMODE(st.st_mode) & 0o040 else "")
    )


def open_reader(where: logfind.LogLocation, state_path: Path | None) -> LineReader:
    if where.kind == "journal":
        spec = JournalSpec(user_unit=where.unit) if where.user_unit else JournalSpec(unit=where.unit)
        return JournalLog(spec, state_path)
    return (DockerLog if where.kind == "docker" else FileLog)(where.path, state_path)


class ServerLogSource:
    """One target's log: found (and found again while missing), read each gather, folded into points."""

    def __init__(
        self,
        target: TargetConfig,
        state_dir: Path | None = None,
        ledger: ProbeLedger | None = None,
        locate: Callable[[TargetConfig], logfind.Found] | None = None,
        journal_files: Sequence[str] = (),
    ):
        self.target = target
        self.name = f"serverlog:{target.display_name}"
        self._state_dir = state_dir
        self._ledger = ledger or ProbeLedger()
        self._locate = locate or (lambda t: logfind.locate(t, logfind.listening_process(t)))
        self._journal_files = list(journal_files)
        """Tests: read these journal files instead of the system journal."""
        self._located_at = float("-inf")
        self.where: logfind.LogLocation | None = None
        self.server_type: str | None = None
        self._reader: LineReader | None = None
        self._parser: Parser | None = None
        self._there = False
        self._interval_path: Path | None = None
        self._last_ns: int | None = None
        self._own = OwnTraffic()
        self._apis_seen: set[str] = {GENERATE}
        self._state = StateLog(log)
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()

    # -- finding and opening
    def _find(self) -> None:
        now = time.monotonic()
        if now - self._located_at < LOCATE_EVERY_S:
            return
        self._located_at = now
        found = self._locate(self.target)
        if found.location is None or (found.server_type is not None and found.server_type not in FORMATS):
            return  # server_type None: a `type: auto` target's `log:` whose process says nothing: its lines tell (Sniffer)
        where = found.location
        if where.kind == "journal" and self._journal_files:
            where = logfind.LogLocation("journal", unit=where.unit)
        if self._reader is not None and where == self.where:
            return  # still there, not yet written again
        denied = unreadable(where)
        if denied:
            self._state.fail("denied", f"serverlog {self.target.display_name}: {denied}", logging.INFO)
            return
        paths = state_paths(self._state_dir, self.target, where)
        if where.kind == "journal" and self._journal_files:
            reader: LineReader = JournalLog(JournalSpec(unit=where.unit, files=self._journal_files), paths and paths[0])
        else:
            reader = open_reader(where, paths[0] if paths else None)
        if self._reader is not None:
            self._reader.close()  # gone (a container recreated, a server restarted with another --log-file)
        self.where, self.server_type, self._reader = where, found.server_type, reader
        self._parser = FORMATS[found.server_type].Parser() if found.server_type else Sniffer(FORMATS)
        if paths is not None:
            self._interval_path = paths[1]
            self._last_ns, carried = _load_last(paths[1])
            self._parser.resume(carried)  # a block the last agent saw begin
        kind = found.server_type or "the server type from its lines"
        log.info("serverlog %s: reading %s (%s)", self.target.display_name, where.describe(), kind)

    # -- reading (in a thread)
    def _read(self, time_limit_s: float) -> list[Event]:
        with self._thread_lock:
            if self._reader is None or not self._reader.there():
                self._find()  # not found yet, or gone: looked for again every LOCATE_EVERY_S
            reader, parser = self._reader, self._parser
            if reader is None or parser is None:
                return []
            self._there = reader.there()
            end = time.monotonic() + time_limit_s
            events: list[Event] = []
            left = MAX_READ
            while left > 0:
                lines = reader.read(min(256 * 1024, left))
                if not lines:
                    break
                left -= sum(len(line) + 1 for line in lines)
                for line in lines:
                    events.extend(parser.feed(line))
                if time.monotonic() >= end:
                    break
            if isinstance(parser, Sniffer) and self.server_type is None and parser.server_type is not None:
                self.server_type = parser.server_type
                where = self.where.describe() if self.where else "the log"
                log.info("serverlog %s: %s is %s's log", self.target.display_name, where, self.server_type)
            return events

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        async with self._lock:
            try:
                events = await asyncio.to_thread(self._read, ctx.deadline_s * TIME_SHARE)
            except JournalDenied:
                me = getpass.getuser()
                where = self.where.describe() if self.where else "the journal"
                self._state.fail(
                    "denied",
                    f"serverlog {self.target.display_name}: {where} is not readable by the agent's user {me}: add it "
                    f"to group systemd-journal (`sudo usermod -aG systemd-journal {me}`, or adm), then restart the "
                    "agent",
                    logging.INFO,
                )
                return []
            except (JournalError, OSError) as exc:
                self._state.fail("read", f"serverlog {self.target.display_name}: cannot read the log: {exc}")
                return []
            if self._reader is None:
                return []
            name, where = self.target.display_name, self.where.describe() if self.where else "the log"
            self._state.ok("read", f"serverlog {name}: log readable again")
            self._state.ok("denied", f"serverlog {name}: log readable now")
            if self._there:
                self._state.ok("missing", f"serverlog {name}: {where} appeared")
            else:  # a typo in `log:`, not written yet, or hidden from this service (ProtectHome)
                self._state.fail(
                    "missing",
                    f"serverlog {name}: {where} does not exist (yet): nothing from it until it does",
                    logging.INFO,
                )
            return self._points(events, ctx.time_ns)

    def _points(self, events: list[Event], time_ns: int) -> list[Metric]:
        events = self._own.user_events(events, self._ledger.sent(self.target.display_name), time.time())
        interval = Interval()
        interval.add(events)
        last = self._last_ns if self._last_ns is not None else time_ns
        seconds = max(0.0, (time_ns - last) / 1e9)
        self._last_ns = time_ns
        if self._interval_path is not None:
            _save_last(self._interval_path, time_ns, self._parser.carry() if self._parser is not None else [])
        if seconds <= 0 or not self._there or self.server_type is None:
            return []  # the first gather (its lines have no interval), no log yet, or not yet known whose
        tags = {**self.target.tags, "target": self.target.display_name, "server_type": self.server_type or ""}
        out = []
        self._apis_seen.update(interval.apis)
        by_api = self.server_type == "ollama"
        for api in sorted(self._apis_seen):
            fields = interval.apis.get(api)
            values = fields.fields(seconds) if fields is not None else {"requests_per_s": 0.0}
            out.append(Metric(MEASUREMENT, {**tags, "api": api} if by_api else tags, values, time_ns))
        if self.server_type == "ollama":
            out.append(Metric(MEASUREMENT, tags, interval.load_fields(seconds), time_ns))
        return out

    async def close(self) -> None:
        async with self._lock:
            with self._thread_lock:
                if self._reader is not None:
                    self._reader.close()


def _load_last(path: Path) -> tuple[int | None, object]:
    """The last interval's end, and what the parser was waiting on then."""
    try:
        doc = json.loads(path.read_text())
        value = doc["time_ns"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, []
    return (value if isinstance(value, int) else None), doc.get("carry", [])


def _save_last(path: Path, time_ns: int, carry: list[object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": 1, "time_ns": time_ns, "carry": carry}))
        os.replace(tmp, path)
    except OSError:
        pass  # the reader's own state file says when state_dir is unwritable


class DiscoveredServerLogs:
    """Without `targets:`: a log source for each server discovery finds (`Finds`)."""

    name = "serverlog"

    def __init__(self, found: list[TargetConfig], state_dir: Path | None, ledger: ProbeLedger):
        self._found = found
        self._state_dir = state_dir
        self._ledger = ledger
        self._known: set[str] = set()

    async def find(self, ctx: GatherContext) -> list[Source]:
        new: list[Source] = []
        for target in self._found:
            if target.display_name not in self._known and target.type in FORMATS:
                self._known.add(target.display_name)
                new.append(ServerLogSource(target, self._state_dir, self._ledger))
        return new

    async def gather(self, ctx: GatherContext) -> Sequence[Metric]:
        return []

    async def close(self) -> None:
        pass


def wanted(target: TargetConfig) -> bool:
    return target.type in (*FORMATS, "auto") and (target.log or "").strip().lower() != "none"


def build(config: Config, env: SourceEnv) -> list[Source]:
    if config.targets is None:
        if not config.discovery.enabled:
            return []
        return [DiscoveredServerLogs(env.discovered_targets, env.state_dir, env.probe_ledger)]
    return [ServerLogSource(t, env.state_dir, env.probe_ledger) for t in config.targets if wanted(t)]
