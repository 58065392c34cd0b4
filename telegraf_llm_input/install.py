"""`install-service`: the files that turn an installed agent into a service, with this install's own paths.

Written from the package itself (not from the source tree), so a wheel installs the same files as a checkout:
the config (the sample config, which is the defaults), the Telegraf execd drop-in, the link onto PATH, and the
systemd unit (Linux) or the launchd job (macOS); with `--proxy`, the measuring proxy's own unit or job too
(docs/proxy.md: a service apart from the agent, so user traffic never drops with Telegraf's restarts). `--root`
stages everything under a directory (like DESTDIR) while the files name the final paths. The files in
packaging/ are these renderings for /opt/telegraf-llm-input (and an example user's prefix on macOS).

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
from telegraf_llm_input.config.outputs import parse_listen
from telegraf_llm_input.proxy import options as proxy_options
from telegraf_llm_input.proxy.address import Address

NAME = "telegraf-llm-input"
LABEL = "org.telegraf-llm-input.agent"
PROXY_LABEL = "org.telegraf-llm-input.proxy"
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
    proxy_service: Path
    """The proxy's systemd unit or launchd plist (written with `--proxy`)."""
    log: Path | None = None
    """launchd only: where stderr goes (stdout, the metrics when no output is configured, is discarded)."""

    @property
    def binary(self) -> Path:
        return self.prefix / "bin" / NAME

    @property
    def proxy_log(self) -> Path | None:
        """launchd only: the proxy's log (its start, upstream down/back, stop: a few lines, never a request)."""
        return None if self.log is None else self.log.with_name(f"{NAME}-proxy.log")


@dataclass(frozen=True)
class ProxySetup:
    """The proxy service's two choices: the model server it forwards to, and where clients connect."""

    upstream: str
    listen: str


def proxy_setup(upstream: str, listen: str) -> ProxySetup:
    """Both checked as the proxy command checks them (ValueError: one line naming the bad one), so the unit
    written never fails at its first start."""
    try:
        Address.parse(upstream)
    except ValueError as exc:
        raise ValueError(f"--upstream: {exc}") from None
    try:
        parse_listen(listen)
    except ValueError as exc:
        raise ValueError(f"--listen: {exc}") from None
    return ProxySetup(upstream, listen)


def linux_layout(prefix: Path = OPT) -> Layout:
    return Layout(
        "linux",
        prefix,
        config=Path("/etc") / NAME / "config.yaml",
        telegraf_dir=Path("/etc/telegraf/telegraf.d"),
        service=Path("/etc/systemd/system") / f"{NAME}.service",
        link=Path("/usr/local/bin") / NAME,
        proxy_service=Path("/etc/systemd/system") / f"{NAME}-proxy.service",
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
        proxy_service=home / "Library" / "LaunchAgents" / f"{PROXY_LABEL}.plist",
        log=prefix / "var" / "log" / f"{NAME}.log",
    )


def default_layout(platform: str, prefix: Path | None = None) -> Layout:
    prefix = prefix or Path(sys.prefix)
    if platform == "macos":
        return macos_layout(prefix, Path.home())
    return linux_layout(prefix)


HARDENED = """\
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes"""
"""What both units (the agent's, the proxy's) shut off: neither needs any of it."""

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
{hardened}
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

PROXY_UNIT = """\
# {name} proxy: a measuring pass-through proxy in front of one model server (docs/proxy.md; written by
# `{name} install-service --proxy`). A service of its own, apart from the agent: user traffic must not drop
# when Telegraf restarts its plugins. Clients point at {listen} (or run it on Ollama's port: Ollama on 11435 with
# OLLAMA_HOST=127.0.0.1:11435 in its unit's override, and here --listen 127.0.0.1:11434 --upstream http://127.0.0.1:11435).
# The agent reads its page (/proxy/metrics) as a target with `type: auto` or `type: proxy`. It needs the
# `proxy` extra in the install it runs from (pip install '{name}[proxy]': httptools, uvloop).
[Unit]
Description={name} proxy: what every request to the model server felt (TTFT, tokens, errors)
Documentation=https://github.com/telegraf-llm-input/telegraf-llm-input/blob/main/docs/proxy.md
After=network-online.target ollama.service
Wants=network-online.target

[Service]
Type=simple
ExecStart={binary} proxy --upstream {upstream} --listen {listen}
Restart=always
RestartSec=1s
TimeoutStopSec=10s
DynamicUser=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
{hardened}
MemoryDenyWriteExecute=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
# Many concurrent streams: two sockets each.
LimitNOFILE=65536

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
    return UNIT.format(name=NAME, binary=layout.binary, config=layout.config, hardened=HARDENED)


def render_proxy_unit(layout: Layout, setup: ProxySetup) -> str:
    return PROXY_UNIT.format(
        name=NAME, binary=layout.binary, upstream=setup.upstream, listen=setup.listen, hardened=HARDENED
    )


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


def render_proxy_plist(layout: Layout, setup: ProxySetup) -> bytes:
    """The proxy's launchd job: kept alive whatever its exit (clients are waiting), at interactive priority (it
    sits in every request's path); its few log lines go to a log of its own."""
    assert layout.proxy_log is not None
    job = {
        "Label": PROXY_LABEL,
        "ProgramArguments": [str(layout.binary), "proxy", "--upstream", setup.upstream, "--listen", setup.listen],
        "RunAtLoad": True,
        "KeepAlive": True,
        "ThrottleInterval": 1,
        "ExitTimeOut": 10,
        "ProcessType": "Interactive",
        "Umask": 0o077,
        "WorkingDirectory": str(layout.prefix),
        "EnvironmentVariables": {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
        "StandardOutPath": str(layout.proxy_log),
        "StandardErrorPath": str(layout.proxy_log),
        "SoftResourceLimits": {"NumberOfFiles": 8192},
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


def _touch_log(root: Path, log: Path) -> Written:
    staged = stage(root, log)
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.touch(exist_ok=True)
    return Written(staged, "log (stderr only)", kept=True)


def install(
    layout: Layout, root: Path = Path("/"), force: bool = False, proxy: ProxySetup | None = None
) -> list[Written]:
    """Write the service files; an existing config is kept unless `force` (it may hold the user's edits).
    `proxy`: the proxy's unit or job too."""
    done = [
        _write(root, layout.config, sample_config(), "config (the defaults)", 0o644, replace=force),
        _write(root, layout.telegraf_dir / f"{NAME}.conf", render_dropin(layout), "Telegraf execd drop-in", 0o644),
        _link(root, layout.link, layout.binary),
    ]
    if layout.platform == "macos":
        assert layout.log is not None and layout.proxy_log is not None
        done.append(_touch_log(root, layout.log))
        done.append(_write(root, layout.service, render_plist(layout), "launchd job (LaunchAgent)", 0o644))
        if proxy is not None:
            done.append(_touch_log(root, layout.proxy_log))
            plist = render_proxy_plist(layout, proxy)
            done.append(_write(root, layout.proxy_service, plist, "the proxy's launchd job (LaunchAgent)", 0o644))
    else:
        done.append(_write(root, layout.service, render_unit(layout), "systemd unit", 0o644))
        if proxy is not None:
            unit = render_proxy_unit(layout, proxy)
            done.append(_write(root, layout.proxy_service, unit, "the proxy's systemd unit", 0o644))
    return done


def next_steps(layout: Layout, proxy: ProxySetup | None = None) -> list[str]:
    """What to run after the files are in place."""
    check = f"{layout.link} check-config --config {layout.config}"
    if proxy is not None:
        start = (
            f"launchctl bootstrap gui/$(id -u) {layout.proxy_service}"
            if layout.platform == "macos"
            else f"systemctl daemon-reload && systemctl enable --now {NAME}-proxy"
        )
        extra = proxy_options.missing_extra()
        proxy_steps = [
            *([f"{layout.binary.parent / 'pip'} install '{NAME}[proxy]'   # first: {extra}"] if extra else []),
            f"{start}   # the proxy; then point clients at http://{proxy.listen} (docs/proxy.md)",
            f"the agent reads the proxy's page: discovery on port 8434, else a target url: http://{proxy.listen}",
        ]
    else:
        proxy_steps = []
    if layout.platform == "macos":
        return [
            *proxy_steps,
            check,
            f"launchctl bootstrap gui/$(id -u) {layout.service}   # standalone (set an output in the config first)",
            f'or under Telegraf: cp {layout.telegraf_dir}/{NAME}.conf "$(brew --prefix)/etc/telegraf.d/"',
            f"{layout.link} doctor --config {layout.config}",
        ]
    return [
        *proxy_steps,
        check,
        "systemctl restart telegraf                      # under Telegraf (the drop-in)",
        f"or standalone: systemctl daemon-reload && systemctl enable --now {NAME}   (set an output first)",
        f"{layout.link} doctor --config {layout.config}",
    ]
