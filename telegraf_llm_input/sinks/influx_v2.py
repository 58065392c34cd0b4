"""The `influxdb_v2` output, through influxdb-client (an optional extra: this module is imported only when a
config has this output, `sinks.BUILDERS`); buffering, retries and error text are shared with v1 (`influx.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from telegraf_llm_input.config.outputs import InfluxV2Output
from telegraf_llm_input.sinks.batching import BatchingSink, WriteError, parse_retry_after
from telegraf_llm_input.sinks.influx import batching_sink, server_message, url_secrets


def build_influx_v2(cfg: InfluxV2Output, name: str, state_dir: str | None) -> BatchingSink:
    # Never None: influxdb-client then refuses every write ("Missing the required parameter `org`").
    org = cfg.org
    client = InfluxDBClient(
        url=cfg.url,
        token=(cfg.token or "").strip(),  # `${INFLUX_TOKEN}` with a newline: no header value has one
        org=org,
        timeout=int(cfg.timeout * 1000),
        verify_ssl=not cfg.insecure_skip_verify,
        ssl_ca_cert=cfg.tls_ca,
        cert_file=cfg.tls_cert,
        cert_key_file=cfg.tls_key,
        enable_gzip=False,
    )
    write_api = client.write_api(write_options=SYNCHRONOUS)

    def blocking_send(text: str) -> None:
        try:
            write_api.write(bucket=cfg.bucket, org=org, record=text.encode("utf-8"), write_precision="ns")  # type: ignore[arg-type]  # a plain string, whatever its annotation says
        except ApiException as exc:
            headers: Mapping[str, str] = exc.headers or {}
            retry_after = headers.get("Retry-After") or headers.get("retry-after")
            raise WriteError(
                int(exc.status or 0), server_message(exc.body) or str(exc.reason or ""), parse_retry_after(retry_after)
            ) from None

    async def send(text: str) -> None:
        await asyncio.to_thread(blocking_send, text)

    def describe(exc: WriteError) -> str:
        if exc.status in (401, 403):
            return f"{exc}: check the token and its write permission on bucket {cfg.bucket!r}"
        if exc.status == 404:
            return f"{exc}: check org {cfg.org!r} (InfluxDB 2.x needs its real name) and bucket {cfg.bucket!r} exist"
        return str(exc)

    async def close() -> None:
        await asyncio.to_thread(client.close)

    return batching_sink(cfg, name, state_dir, send, describe, close, (cfg.token, *url_secrets(cfg.url)))
