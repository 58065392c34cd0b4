"""InfluxDB writers: 1.x over httpx, v2 API through influxdb-client; both send our own line protocol.

v2 uses influxdb-client's synchronous write API with the pre-encoded text (in a thread): the wire
format stays ours (the same bytes as stdout and v1, tested once in lineprotocol), the client
supplies the v2 details (org/bucket, token auth, gzip off, error bodies). Its own batching and
retry machinery is not used: ours persists to disk, theirs keeps batches in memory.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from pathlib import Path

from telegraf_llm_input.log import get_logger
from telegraf_llm_input.sinks.batching import BatchingSink, WriteError, parse_retry_after
from telegraf_llm_input.sinks.buffer import DiskBuffer, MemoryBuffer
from telegraf_llm_input.sinks.config import InfluxV1Output, InfluxV2Output, _Batching

log = get_logger("output")


def make_buffer(cfg: _Batching, name: str, state_dir: str | None) -> DiskBuffer | MemoryBuffer:
    max_bytes = int(cfg.buffer_max_mb * 1_000_000)
    directory = cfg.buffer_dir or (str(Path(state_dir) / "buffer" / name) if state_dir else None)
    if directory is None:
        log.warning("output %s: no buffer_dir and no agent.state_dir: outage buffer is in memory only "
                    "(%g MB) and lost on restart", name, cfg.buffer_max_mb)
        return MemoryBuffer(max_bytes)
    try:
        buffer = DiskBuffer(Path(directory), max_bytes)
    except OSError as exc:
        log.error("output %s: cannot use buffer directory %s (%s): outage buffer is in memory only (%g MB) "
                  "and lost on restart", name, directory, exc.strerror or type(exc).__name__, cfg.buffer_max_mb)
        return MemoryBuffer(max_bytes)
    if buffer.points:
        log.info("output %s: %d point(s) from an earlier run are buffered in %s; replaying", name,
                 buffer.points, directory)
    return buffer


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
    import httpx

    auth = httpx.BasicAuth(cfg.username or "", cfg.password or "") if (cfg.username or cfg.password) else None
    client = httpx.AsyncClient(timeout=cfg.timeout, auth=auth, verify=_verify(cfg) if cfg.url.startswith("https") else True)
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
            return (f'database "{cfg.database}" does not exist on {cfg.url}: create it '
                    f'(influx -execute \'CREATE DATABASE "{cfg.database}"\'); the agent does not create databases')
        if exc.status in (401, 403):
            return f"{exc}: check username/password"
        return str(exc)

    return BatchingSink(name, send, batch_size=cfg.batch_size, flush_interval=cfg.flush_interval,
                        buffer=make_buffer(cfg, name, state_dir), describe_error=describe, close=client.aclose)


def build_influx_v2(cfg: InfluxV2Output, name: str, state_dir: str | None) -> BatchingSink:
    from influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS
    from influxdb_client.rest import ApiException

    # influxdb-client annotates `org: str = None` (None: the token's default org) and takes the precision
    # as a plain string, whatever its annotations say.
    org: str = cfg.org or None  # type: ignore[assignment]
    client = InfluxDBClient(url=cfg.url, token=cfg.token or "", org=org, timeout=int(cfg.timeout * 1000),
                            verify_ssl=not cfg.insecure_skip_verify, ssl_ca_cert=cfg.tls_ca,
                            cert_file=cfg.tls_cert, cert_key_file=cfg.tls_key, enable_gzip=False)
    write_api = client.write_api(write_options=SYNCHRONOUS)

    def blocking_send(text: str) -> None:
        try:
            write_api.write(bucket=cfg.bucket, org=org, record=text.encode("utf-8"), write_precision="ns")  # type: ignore[arg-type]
        except ApiException as exc:
            headers: Mapping[str, str] = exc.headers or {}
            retry_after = headers.get("Retry-After") or headers.get("retry-after")
            raise WriteError(int(exc.status or 0), server_message(exc.body) or str(exc.reason or ""),
                             parse_retry_after(retry_after)) from None

    async def send(text: str) -> None:
        await asyncio.to_thread(blocking_send, text)

    def describe(exc: WriteError) -> str:
        if exc.status in (401, 403):
            return f"{exc}: check the token and its write permission on bucket {cfg.bucket!r}"
        if exc.status == 404:
            return f"{exc}: check org {cfg.org!r} and bucket {cfg.bucket!r} exist"
        return str(exc)

    async def close() -> None:
        await asyncio.to_thread(client.close)

    return BatchingSink(name, send, batch_size=cfg.batch_size, flush_interval=cfg.flush_interval,
                        buffer=make_buffer(cfg, name, state_dir), describe_error=describe, close=close)
