"""What this user may see of another user's model server, and what to grant when it may not.

Measured on Linux (docs/deploy.md, "What the service user needs"): finding the process behind a listening
socket means reading `/proc/<pid>/fd` of that process, which takes both CAP_DAC_READ_SEARCH (the directory is
its owner's, mode 0500) and CAP_SYS_PTRACE (the kernel's ptrace read check on each link); one alone finds
nothing. The socket's owner (uid) is in the socket table that anyone may read, so the message can say what is
true about a hidden server instead of "nothing listening". The same capabilities let the agent read the
process's DRM fdinfo (per-process GPU memory on AMD/Intel).
"""

from __future__ import annotations

import pwd
import sys

from telegraf_llm_input.sources.linux_sockets import listeners

PROCESS_GRANT = (
    "grant CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (AmbientCapabilities=, as the shipped systemd unit does) "
    "or run the agent as the server's user"
)
"""The fix for a process, its sockets or its DRM fdinfo that this user cannot see."""
JOURNAL_GRANT = "add the agent's user to the systemd-journal group (SupplementaryGroups=systemd-journal)"


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def listener_owners(port: int) -> list[str]:
    """Who owns the sockets listening on `port` (user names), from the socket table; [] when none or off Linux."""
    if not sys.platform.startswith("linux"):
        return []
    return sorted({user_name(s.uid) for s in (listeners(port) or {}).values()})


def table_addresses(port: int, uid: int) -> list[str]:
    """The addresses `uid` listens on at `port`, from the socket table: what anyone may read about a process whose
    own sockets are hidden (another user's, found by `process.pattern`), so `exposed` is still reported."""
    if not sys.platform.startswith("linux"):
        return []
    return sorted({s.ip for s in (listeners(port) or {}).values() if s.uid == uid})


def hidden_socket(port: int) -> str | None:
    """Said when no process is found behind `port` although a socket listens there: whose it is."""
    owners = listener_owners(port)
    if not owners:
        return None
    return f"a socket on port {port} belongs to a process this user cannot see, owned by {', '.join(owners)}"


def hidden_listener(port: int) -> str | None:
    """`hidden_socket` and the fix: the process source's words for a server it cannot see."""
    fact = hidden_socket(port)
    return f"{fact}: {PROCESS_GRANT}" if fact else None
