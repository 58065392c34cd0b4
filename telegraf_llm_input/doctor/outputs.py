"""Whether the configured outputs answer (InfluxDB: ping, then an empty write that proves the write permission
without adding a point; Prometheus: its listen address free), and whether a Telegraf drop-in runs this binary."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from telegraf_llm_input.config import Config
from telegraf_llm_input.config.outputs import InfluxV1Output, InfluxV2Output, PrometheusOutput, parse_listen
from telegraf_llm_input.config.targets import redact_url
from telegraf_llm_input.doctor.report import Check, no, note, ok
from telegraf_llm_input.sinks.influx import _verify, server_message
from telegraf_llm_input.sources.visibility import listener_owners

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, as the `tomli` package on 3.10 (`pip install tomli` for this check there)
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

AREA = "outputs"
TELEGRAF = "Telegraf"
TELEGRAF_PLACES: tuple[str, ...] = (
    (
        "/opt/homebrew/etc/telegraf.conf",
        "/opt/homebrew/etc/telegraf.d",
        "/usr/local/etc/telegraf.conf",
        "/usr/local/etc/telegraf.d",
    )
    if sys.platform == "darwin"
    else ("/etc/telegraf/telegraf.conf", "/etc/telegraf/telegraf.d")
)
"""Telegraf's config and drop-in directory: Debian/Ubuntu packages; Homebrew on Apple Silicon and on Intel."""


async def check(config: Config) -> list[Check]:
    outputs = [o for o in config.outputs if o.type != "stdout"]
    checks: list[Check] = []
    if not config.outputs or len(outputs) < len(config.outputs):
        checks.append(note(AREA, "stdout: line protocol for Telegraf's execd (a standalone service needs an output)"))
    for out in outputs:
        if isinstance(out, (InfluxV1Output, InfluxV2Output)):
            checks += await influx(out)
        elif isinstance(out, PrometheusOutput):
            checks.append(prometheus(out))
    return checks


async def influx(cfg: InfluxV1Output | InfluxV2Output) -> list[Check]:
    base = cfg.url.rstrip("/")
    name = f"{cfg.type} {redact_url(cfg.url)}"
    verify = _verify(cfg) if cfg.url.startswith("https") else True
    async with httpx.AsyncClient(timeout=cfg.timeout, verify=verify) as client:
        try:
            ping = await client.get(f"{base}/ping")
        except httpx.HTTPError as exc:
            return [no(AREA, f"{name}: no answer ({type(exc).__name__}: {exc})", "start InfluxDB or correct `url`")]
        version = ping.headers.get("x-influxdb-version") or ping.headers.get("x-victoriametrics-version") or "?"
        if ping.status_code not in (200, 204):
            return [no(AREA, f"{name}: /ping answered HTTP {ping.status_code}", "is `url` an InfluxDB?")]
        try:
            if isinstance(cfg, InfluxV1Output):
                params = {"db": cfg.database, "precision": "ns"}
                if cfg.retention_policy:
                    params["rp"] = cfg.retention_policy
                auth = (cfg.username or "", cfg.password or "") if cfg.username or cfg.password else None
                r = await client.post(
                    f"{base}/write", params=params, content=b"", auth=auth or httpx.USE_CLIENT_DEFAULT
                )
                into = f"database {cfg.database!r}"
            else:
                params = {"bucket": cfg.bucket, "precision": "ns"}
                if cfg.org:
                    params["org"] = cfg.org
                headers = {"Authorization": f"Token {cfg.token}"} if cfg.token else {}
                r = await client.post(f"{base}/api/v2/write", params=params, content=b"", headers=headers)
                into = f"bucket {cfg.bucket!r}" + (f" of org {cfg.org!r}" if cfg.org else "")
        except httpx.HTTPError as exc:
            return [no(AREA, f"{name} (InfluxDB {version}): write check failed: {exc}", "check `url` and TLS settings")]
    said = f"{name} (InfluxDB {version})"
    if 200 <= r.status_code < 300:
        return [ok(AREA, f"{said}: answers; writing into {into} is allowed")]
    return [
        no(
            AREA,
            f"{said}: a write into {into} is refused: HTTP {r.status_code} {server_message(r.content)}",
            _write_fix(cfg, r.status_code, server_message(r.content)),
        )
    ]


def _write_fix(cfg: InfluxV1Output | InfluxV2Output, status: int, message: str) -> str:
    if isinstance(cfg, InfluxV1Output):
        if status == 404:
            return f"create it: influx -execute 'CREATE DATABASE \"{cfg.database}\"'"
        if status in (401, 403):
            return f"set username/password of a user with WRITE on {cfg.database!r} (GRANT WRITE ON ...)"
    else:
        if status in (401, 403):
            return f"use a token with write permission on bucket {cfg.bucket!r} (influx auth create --write-bucket ...)"
        if status == 404 and "page not found" in message:
            return "this InfluxDB has no v2 API (1.x before 1.8): use the influxdb_v1 output"
        if status == 404:
            return f"check that org {cfg.org!r} and bucket {cfg.bucket!r} exist"
    return "see the error above"


def prometheus(cfg: PrometheusOutput) -> Check:
    host, port = parse_listen(cfg.listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        owners = listener_owners(port)
        by = f" (listening: {', '.join(owners)}'s process)" if owners else ""
        return no(
            AREA,
            f"prometheus {cfg.listen}: cannot listen there: {exc.strerror}{by}",
            "stop what holds it (an agent already running?) or choose another `listen`",
        )
    return ok(AREA, f"prometheus {cfg.listen}: the address is free to listen on")


def this_binary() -> Path:
    """The command this install puts on PATH: <prefix>/bin/telegraf-llm-input."""
    return Path(sys.prefix) / "bin" / "telegraf-llm-input"


def dropin_commands(text: str) -> list[list[str]]:
    """The `command` of each `[[inputs.execd]]` in a Telegraf config that runs telegraf-llm-input."""
    blocks = tomllib.loads(text).get("inputs", {}).get("execd", [])
    commands = [b.get("command") for b in blocks if isinstance(b, dict)]
    return [c for c in commands if isinstance(c, list) and c and Path(str(c[0])).name == "telegraf-llm-input"]


def telegraf(places: Sequence[str] = TELEGRAF_PLACES) -> list[Check]:
    checks: list[Check] = []
    here = this_binary().resolve()
    for place in map(Path, places):
        for path in sorted(place.glob("*.conf")) if place.is_dir() else [place] if place.is_file() else []:
            try:
                argvs = dropin_commands(path.read_text(errors="replace"))
            except OSError as exc:
                checks.append(
                    no(
                        TELEGRAF,
                        f"{path}: cannot read: {exc.strerror}",
                        "run doctor as root or as telegraf",
                        blocking=False,
                    )
                )
                continue
            except tomllib.TOMLDecodeError as exc:
                checks.append(no(TELEGRAF, f"{path}: not valid TOML: {exc}", "Telegraf will not start with it"))
                continue
            checks += [_dropin(path, [str(a) for a in argv], here) for argv in argvs]
    if not checks:
        checks.append(note(TELEGRAF, f"nothing runs telegraf-llm-input under Telegraf (looked in {', '.join(places)})"))
    return checks


def _dropin(path: Path, argv: list[str], here: Path) -> Check:
    binary = Path(argv[0])
    if not binary.exists():
        return no(
            TELEGRAF,
            f"{path} runs {binary}, which does not exist",
            f"set command[0] to {this_binary()} (or run install-service again)",
        )
    config = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    if config and not Path(config).exists():
        return no(
            TELEGRAF,
            f"{path} runs {binary} with --config {config}, which does not exist",
            f"write it: mkdir -p {Path(config).parent} && {this_binary()} sample-config > {config}",
        )
    if binary.resolve() != here:
        return no(
            TELEGRAF,
            f"{path} runs {binary}, another install than this one ({this_binary()})",
            "fine if meant; else point command[0] at this one",
            blocking=False,
        )
    return ok(TELEGRAF, f"{path} runs this binary ({binary})" + (f" with {config}" if config else ""))
