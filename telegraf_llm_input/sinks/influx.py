"""InfluxDB writers: 1.x over httpx here, v2 API through influxdb-client (`influx_v2.py`); both send our own
line protocol, with the buffer and error text of this module.

v2 uses influxdb-client's synchronous write API with the pre-encoded text (in a thread): the wire
format stays ours (the same bytes as stdout and v1, tested once in lineprotocol), the client
supplies the v2 details (org/bucket, token auth, gzip off, error bodies). Its own batching and
retry machinery is not used: ours persists to disk, theirs keeps batches in memory.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from telegraf_llm_input.config.outputs import InfluxV1Output, _Batching
from telegraf_llm_input.config.targets import redact_url
from telegraf_llm_input.log import get_logger
from telegraf_llm_input.sinks.batching import BatchingSink, WriteError, parse_retry_after
from telegraf_llm_input.sinks.buffer import DiskBuffer, MemoryBuffer

log = get_logger("output")


def batching_sink(
    cfg: _Batching,
    name: str,
    state_dir: str | None,
    send: Callable[[str], Awaitable[None]],
    describe: Callable[[WriteError], str],
    close: Callable[[], Awaitable[None]],
    secrets: tuple[str | None, ...] = (),
) -> BatchingSink:
    """A database output: its batching settings and outage buffer from the config, its own send and wording."""
    return BatchingSink(
        name,
        send,
        batch_size=cfg.batch_size,
        flush_interval=cfg.flush_interval,
        buffer=make_buffer(cfg, name, state_dir),
        describe_error=describe,
        close=close,
        secrets=[s for s in secrets if s],
    )


def make_buffer(cfg: _Batching, name: str, state_dir: str | None) -> DiskBuffer | MemoryBuffer:
    max_bytes = int(cfg.buffer_max_mb * 1_000_000)
    directory = cfg.buffer_dir or (str(Path(state_dir) / "buffer" / name) if state_dir else None)
    if directory is None:
        log.warning(
            "output %s: no buffer_dir and no agent.state_dir: outage buffer is in memory only "
            "(%g MB) and lost on restart",
            name,
            cfg.buffer_max_mb,
        )
        return MemoryBuffer(max_bytes)
    try:
        buffer = DiskBuffer(Path(directory), max_bytes)
    except OSError as exc:
        log.error(
            "output %s: cannot use buffer directory %s (%s): outage buffer is in memory only (%g MB) "
            "and lost on restart",
            name,
            directory,
            exc.strerror or type(exc).__name__,
            cfg.buffer_max_mb,
        )
        return MemoryBuffer(max_bytes)
    if buffer.points:
        log.info(
            "output %s: %d point(s) from an earlier run are buffered in %s; replaying", name, buffer.points, directory
        )
    return buffer


def url_secrets(url: str) -> tuple[str | None, ...]:
    """The password of a URL's user info, as written and decoded: never in a log line."""
    password = urlsplit(url).password
    return (password, unquote(password)) if password else ()


def server_message(body: bytes | str | None) -> str:
    """The error text of an InfluxDB answer (`{"error": ...}` or `{"message": ...}`), one line."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            text = str(data.get("error") or data.get("message") or text)
    except ValueError:
        pass
    return " ".join(text.split())[:300]


def _verify(cfg: _Batching) -> ssl.SSLContext | bool:
    if cfg.insecure_skip_verify:
        return False
    ctx = ssl.create_default_context(cafile=cfg.tls_ca) if cfg.tls_ca else ssl.create_default_context()
    if cfg.tls_cert:
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    return ctx


def build_influx_v1(cfg: InfluxV1Output, name: str, state_dir: str | None) -> BatchingSink:
    auth = httpx.BasicAuth(cfg.username or "", cfg.password or "") if (cfg.username or cfg.password) else None
    client = httpx.AsyncClient(
        timeout=cfg.timeout, auth=auth, verify=_verify(cfg) if cfg.url.startswith("https") else True
    )
    params = {"db": cfg.database, "precision": "ns"}
    if cfg.retention_policy:
        params["rp"] = cfg.retention_policy
    url = cfg.url.rstrip("/") + "/write"

    async def send(text: str) -> None:
        r = await client.post(url, params=params, content=text.encode("utf-8"))
        if not 200 <= r.status_code < 300:
            raise WriteError(r.status_code, server_message(r.content), parse_retry_after(r.headers.get("retry-after")))

    def describe(exc: WriteError) -> str:
        if exc.status == 404 and "database not found" in exc.message:
            return (
                f'database "{cfg.database}" does not exist on {redact_url(cfg.url)}: create it '
                f"(influx -execute 'CREATE DATABASE \"{cfg.database}\"'); the agent does not create databases"
            )
        if exc.status in (401, 403):
            return f"{exc}: check username/password"
        return str(exc)

    return batching_sink(cfg, name, state_dir, send, describe, client.aclose, (cfg.password, *url_secrets(cfg.url)))
