"""`install-service`: the files that turn an installed agent into a service, with this install's own paths.

Written from the package itself (not from the source tree), so a wheel installs the same files as a checkout:
the config (the sample config, which is the defaults), the Telegraf execd drop-in, the link onto PATH, and the
systemd unit (Linux) or the launchd job (macOS). `--root` stages everything under a directory (like DESTDIR)
while the files name the final paths. The files in packaging/ are these renderings for /opt/telegraf-llm-input.

Who the service runs as, measured (docs/deploy.md, "What the service user needs"): a systemd dynamic user with
CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (another user's model server: its process, sockets and DRM fdinfo; one
capability alone sees nothing), the systemd-journal group (the model server's log in the journal), and the
NVIDIA device nodes (NVML); sysfs needs nothing. On macOS a LaunchAgent of the user who installs it: model
servers there (Ollama, LM Studio) are the user's own, which that user sees without root.
"""

from __future__ import annotations

import os
import plistlib
import sys
from dataclasses import dataclass
from pathlib import Path

from telegraf_llm_input.config import sample_config

NAME = "telegraf-llm-input"
LABEL = "org.telegraf-llm-input.agent"
OPT = Path("/opt/telegraf-llm-input")
"""Where the Linux instructions make the venv (docs/deploy.md)."""


@dataclass(frozen=True)
class Layout:
    """Where each file of one install goes (final paths, without `--root`)."""

    platform: str
    """`linux` (systemd) or `macos` (launchd)."""
    prefix: Path
    """The venv (or prefix) holding bin/telegraf-llm-input."""
    config: Path
    telegraf_dir: Path
    service: Path
    """The systemd unit or the launchd plist."""
    link: Path
    """The command on PATH: a symlink to the prefix's."""
    log: Path | None = None
    """launchd only: where stderr goes (stdout, the metrics when no output is configured, is discarded)."""

    @property
    def binary(self) -> Path:
        return self.prefix / "bin" / NAME


def linux_layout(prefix: Path = OPT) -> Layout:
    return Layout(
        "linux",
        prefix,
        config=Path("/etc") / NAME / "config.yaml",
        telegraf_dir=Path("/etc/telegraf/telegraf.d"),
        service=Path("/etc/systemd/system") / f"{NAME}.service",
        link=Path("/usr/local/bin") / NAME,
    )


def macos_layout(prefix: Path, home: Path) -> Layout:
    """A user prefix (a venv such as ~/.local/telegraf-llm-input): everything under it or the user's home."""
    return Layout(
        "macos",
        prefix,
        config=prefix / "etc" / "config.yaml",
        telegraf_dir=prefix / "etc" / "telegraf.d",
        service=home / "Library" / "LaunchAgents" / f"{LABEL}.plist",
        link=home / ".local" / "bin" / NAME,
        log=prefix / "var" / "log" / f"{NAME}.log",
    )


def default_layout(platform: str, prefix: Path | None = None) -> Layout:
    prefix = prefix or Path(sys.prefix)
    if platform == "macos":
        return macos_layout(prefix, Path.home())
    return linux_layout(prefix)


UNIT = """\
# {name} standalone: writes to InfluxDB and/or serves Prometheus /metrics (written by `{name} install-service`).
# Under Telegraf, use the [[inputs.execd]] drop-in instead; this unit is not needed.
# Tokens: INFLUX_TOKEN=... in /etc/{name}/env (root, mode 0600; systemd reads it) and
# `token: ${{INFLUX_TOKEN}}` in the config (DynamicUser cannot read a root-only token_file).
# The outage buffer: set agent.state_dir: /var/lib/{name} (StateDirectory below) in the config.
# What the service user can see, and the fix for what it cannot: `{name} doctor` run as it
# (docs/deploy.md, "What the service user needs").
[Unit]
Description={name}: LLM server and GPU metrics exporter
Documentation=https://github.com/telegraf-llm-input/telegraf-llm-input
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={binary} --config {config} --signal none
EnvironmentFile=-/etc/{name}/env
Restart=on-failure
RestartSec=5s
TimeoutStopSec=10s
DynamicUser=yes
# What the service user needs, measured (docs/deploy.md): another user's model server (its pid behind the
# port, its sockets, its DRM fdinfo) takes both capabilities; one alone finds nothing. Nothing else is kept.
AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
CapabilityBoundingSet=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
# The model server's log in the journal (journalctl -u ollama).
SupplementaryGroups=systemd-journal
# A request log of the model server's own group: add it, e.g. with `systemctl edit {name}`:
# SupplementaryGroups=ollama
StateDirectory={name}
StateDirectoryMode=0700
ConfigurationDirectory={name}
ProtectSystem=strict
# Home directories readable, never writable: a model server run by a user logs there (~/.ollama/logs/server.log).
ProtectHome=read-only
PrivateTmp=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
# NVML needs the GPU device nodes; everything else stays closed (AMD/Intel sysfs needs no device).
DevicePolicy=closed
DeviceAllow=/dev/nvidiactl rw
DeviceAllow=/dev/nvidia-uvm rw
DeviceAllow=char-nvidia-frontend rw
DeviceAllow=char-nvidia-uvm rw
DeviceAllow=char-nvidia-caps rw

[Install]
WantedBy=multi-user.target
"""

DROPIN = """\
# {name}: LLM model server + GPU metrics for Telegraf (written by `{name} install-service`).
# In {telegraf_dir}/; restart Telegraf after changing it. Check it with:
#   telegraf --config /etc/telegraf/telegraf.conf --config-directory /etc/telegraf/telegraf.d \\
#            --input-filter execd --test --test-wait 10
# Telegraf's user sees another user's model server only with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH
# (`systemctl edit telegraf`: AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH); `{name} doctor`,
# run as that user, says what it can and cannot see.
[[inputs.execd]]
  ## The agent, one string per argument. `--signal stdin`: one gather per newline Telegraf writes.
  ## Leave out `--config ...` to run on defaults (host metrics, local model servers, the GPU).
  command = ["{binary}", "--signal", "stdin", "--config", "{config}"]

  ## Telegraf writes a newline on the agent's stdin once per interval; the agent answers with one gather.
  signal = "STDIN"

  ## How often to gather. 10-30 s is enough; polling faster can hurt the model server.
  interval = "10s"

  ## If the agent exits unexpectedly (for example a broken config: it exits 2 with one E! line in
  ## Telegraf's log), Telegraf starts it again after this delay.
  restart_delay = "10s"

  ## The agent prints InfluxDB line protocol on stdout and logs (E!/W!/I!/D! prefixes) on stderr.
  data_format = "influx"

  ## Environment for the agent, e.g. a token the config refers to as ${{LLM_TOKEN}}.
  # environment = ["LLM_TOKEN=..."]
"""


def render_unit(layout: Layout) -> str:
    return UNIT.format(name=NAME, binary=layout.binary, config=layout.config)


def render_dropin(layout: Layout) -> str:
    return DROPIN.format(name=NAME, binary=layout.binary, config=layout.config, telegraf_dir=layout.telegraf_dir)


def render_plist(layout: Layout) -> bytes:
    """The launchd job: a LaunchAgent of the installing user, restarted when it fails, at background priority.

    stdout goes to /dev/null: with no output configured it carries every gather's metrics, and a file there
    would grow without bound; stderr (one line per change of state) goes to the log the install created.
    """
    assert layout.log is not None
    job = {
        "Label": LABEL,
        "ProgramArguments": [str(layout.binary), "--config", str(layout.config), "--signal", "none"],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 10,
        "ExitTimeOut": 10,
        "ProcessType": "Background",
        "LowPriorityIO": True,
        "Nice": 5,
        "Umask": 0o077,
        "WorkingDirectory": str(layout.prefix),
        "EnvironmentVariables": {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},  # lsof, ioreg, sysctl
        "StandardOutPath": "/dev/null",
        "StandardErrorPath": str(layout.log),
        "SoftResourceLimits": {"NumberOfFiles": 1024},
    }
    return plistlib.dumps(job, sort_keys=False)


@dataclass(frozen=True)
class Written:
    path: Path
    """Where it went (with `--root`)."""
    what: str
    kept: bool = False
    """It was there already and was left alone (the config; `--force` replaces it)."""


def _write(root: Path, path: Path, data: str | bytes, what: str, mode: int, replace: bool = True) -> Written:
    target = stage(root, path)
    if target.exists() and not replace:
        return Written(target, what, kept=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.chmod(mode)
    tmp.replace(target)
    return Written(target, what)


def stage(root: Path, path: Path) -> Path:
    """`path` under `root` (`/` means the real place)."""
    return root / path.relative_to(path.anchor)


def _link(root: Path, link: Path, to: Path) -> Written:
    target = stage(root, link)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        if target.is_symlink() and Path(os.readlink(target)) == to:
            return Written(target, "command on PATH", kept=True)
        target.unlink()
    target.symlink_to(to)
    return Written(target, "command on PATH")


def install(layout: Layout, root: Path = Path("/"), force: bool = False) -> list[Written]:
    """Write the service files; an existing config is kept unless `force` (it may hold the user's edits)."""
    done = [
        _write(root, layout.config, sample_config(), "config (the defaults)", 0o644, replace=force),
        _write(root, layout.telegraf_dir / f"{NAME}.conf", render_dropin(layout), "Telegraf execd drop-in", 0o644),
        _link(root, layout.link, layout.binary),
    ]
    if layout.platform == "macos":
        assert layout.log is not None
        log = stage(root, layout.log)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch(exist_ok=True)
        done.append(Written(log, "log (stderr only)", kept=True))
        done.append(_write(root, layout.service, render_plist(layout), "launchd job (LaunchAgent)", 0o644))
    else:
        done.append(_write(root, layout.service, render_unit(layout), "systemd unit", 0o644))
    return done


def next_steps(layout: Layout) -> list[str]:
    """What to run after the files are in place."""
    check = f"{layout.link} check-config --config {layout.config}"
    if layout.platform == "macos":
        return [
            check,
            f"launchctl bootstrap gui/$(id -u) {layout.service}   # standalone (set an output in the config first)",
            f'or under Telegraf: cp {layout.telegraf_dir}/{NAME}.conf "$(brew --prefix)/etc/telegraf.d/"',
            f"{layout.link} doctor --config {layout.config}",
        ]
    return [
        check,
        "systemctl restart telegraf                      # under Telegraf (the drop-in)",
        f"or standalone: systemctl daemon-reload && systemctl enable --now {NAME}   (set an output first)",
        f"{layout.link} doctor --config {layout.config}",
    ]
