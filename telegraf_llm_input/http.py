"""Talking HTTP to a target: one pooled client per target, capped bodies, one-line errors.

Why a module: every part that reaches a model server (scrapes, the probe's streaming POST)
must reuse connections, respect the target's timeout, TLS and token, never log the token, and
turn any failure into a short `FetchError` a log line can carry.

API:
- `HttpPool` (one per agent, `SourceEnv.http_pool()`; an `http11.Client` per target); a source
  calls `pool.retain()` when built and `await pool.release()` in its `close()`.
- `await get(pool, target, path, auth=True, retries=None)` -> `http11.Response` (whole body, capped);
  any failure raises `errors.FetchError` (both re-exported here, where callers look for them).
- `headers_for(target, auth)`, `tls_verify(target)`, `transport(exc)` (shared with the probe's
  own httpx client).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from telegraf_llm_input import http11, tlsgate
from telegraf_llm_input.aio import within
from telegraf_llm_input.config.targets import TargetConfig, redact_url
from telegraf_llm_input.errors import FetchError as FetchError, Transport
from telegraf_llm_input.http11 import Response as Response
from telegraf_llm_input.lazy import lazy_import

if TYPE_CHECKING:
    import ssl

    import httpx
else:
    httpx = lazy_import("httpx")  # the probe's client and https targets' CA bundle: a plain scrape never loads it

_BACKOFF_S = (0.1, 0.3, 0.6)
_TlsKey = tuple[str | None, str | None, str | None, bool]


def _tls_key(target: TargetConfig) -> _TlsKey:
    return (target.tls_ca, target.tls_cert, target.tls_key, target.insecure_skip_verify)


class HttpPool:
    """One keep-alive client per target (`http11.Client`, its connections reused gather after gather), sharing one
    TLS context per distinct TLS setting.

    Why not one client for all: a pool shared by N targets looks at its connections for every request it places,
    which cost O(N^2) CPU per gather with httpx (~7 ms per target at 32); a client per target keeps each request's
    cost flat (measured: docs/performance.md).
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[_TlsKey, str, str], http11.Client] = {}
        self._tls: dict[_TlsKey, ssl.SSLContext] = {}
        self._users = 0

    def retain(self) -> HttpPool:
        """Each source using the pool retains it and releases it on close; the last one closes it."""
        self._users += 1
        return self

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            await self.close()

    def client(self, target: TargetConfig) -> http11.Client:
        key = (_tls_key(target), target.display_name, target.url)
        client = self._clients.get(key)
        if client is None:
            tls = self._tls_for(target) if target.url.lower().startswith("https://") else None
            client = http11.Client(target.url, tls)
            self._clients[key] = client
        return client

    def _tls_for(self, target: TargetConfig) -> ssl.SSLContext:
        """The TLS context of a TLS setting, built once (loading the CA bundle costs ~10-40 ms CPU and ~2 MiB)."""
        key = _tls_key(target)
        context = self._tls.get(key)
        if context is None:
            import ssl  # here, not at start-up: a plain-http agent never loads it (tlsgate)

            verify = tls_verify(target)
            if verify is True:
                context = httpx.create_ssl_context(verify=True, trust_env=False)  # certifi's CAs, as httpx uses
            elif verify is False:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = verify
            self._tls[key] = context
        return context

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        self._tls = {}
        for client in clients:
            await client.aclose()


def remember_missing_sniffio() -> None:
    """httpcore runs `import sniffio` for every request and on every close (falling back to asyncio when it is
    missing, as it is with anyio >= 4.5); Python does not remember a failed import, so each one searched all of
    sys.path again (~26 stat() calls per gather). Record "not installed" once, the way the import system
    itself spells it (None in sys.modules); an installed sniffio is left alone."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def tls_verify(target: TargetConfig) -> ssl.SSLContext | bool:
    """A target's TLS verification (as httpx's `verify`): on by default, a custom CA and client certificate if given."""
    if target.insecure_skip_verify:
        return False
    if not (target.tls_ca or target.tls_cert):
        return True
    import ssl  # here, not at start-up: a plain-http agent never loads it (tlsgate)

    try:
        context = ssl.create_default_context(cafile=target.tls_ca)
        if target.tls_cert:
            context.load_cert_chain(target.tls_cert, target.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise FetchError("tls", f"cannot load TLS files for {target.display_name}: {exc}") from None
    return context


def headers_for(target: TargetConfig, auth: bool = True) -> dict[str, str]:
    """A target's headers; no Authorization where its token is empty or blank (`${LLAMA_API_KEY:-}` unset) and
    none of the whitespace around it (an HTTP field value has none: `Bearer ` alone fails every request)."""
    headers = dict(target.headers)
    token = (target.bearer_token or "").strip()
    if auth and token:
        headers["Authorization"] = f"Bearer {token}"
    elif not auth:
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    return headers


def url_for(target: TargetConfig, path: str) -> str:
    return target.url.rstrip("/") + "/" + path.lstrip("/")


def transport(exc: BaseException) -> Transport:
    """What the connection did, read from a scrape's (`http11`), an httpx (the probe's) or a timeout exception."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if tlsgate.is_tls_error(exc):
        return "tls"
    if isinstance(exc, http11.ConnectFailed):
        return "tls" if exc.__cause__ is not None and tlsgate.is_tls_error(exc.__cause__) else "connect"
    if isinstance(exc, http11.Broken):
        return "broken"
    if not type(exc).__module__.startswith("httpx"):
        return "other"  # never touch the lazily imported httpx for an exception that is not its own
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).upper()
        return "tls" if "CERTIFICATE" in text or "SSL" in text else "connect"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return "broken"
    return "other"


def _classify(exc: Exception, where: str, timeout: float) -> FetchError:
    if isinstance(exc, FetchError):
        return exc
    what = transport(exc)
    if what in ("timeout", "connect_timeout"):
        return FetchError("timeout", f"{where}: no answer within {timeout:g}s")
    if what == "tls":
        return FetchError("tls", f"{where}: TLS error: {str(exc)[:160]}")
    if what == "connect":
        text = str(exc)
        if "refused" in text.lower() or "Errno 111" in text or _caused_by(exc, ConnectionRefusedError):
            return FetchError("refused", f"{where}: connection refused")
        return FetchError("refused", f"{where}: cannot connect ({text[:120] or type(exc).__name__})")
    if what == "broken":
        detail = str(exc)[:120] if isinstance(exc, http11.Broken) and str(exc) else type(exc).__name__
        return FetchError("error", f"{where}: connection broken ({detail})")
    return FetchError("error", f"{where}: {type(exc).__name__}: {str(exc)[:160]}")


def _caused_by(exc: BaseException | None, kind: type) -> bool:
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _retryable(err: FetchError) -> bool:
    return err.kind in ("refused", "timeout", "error") or (err.kind == "http_status" and (err.status or 0) >= 500)


async def get(
    pool: HttpPool,
    target: TargetConfig,
    path: str,
    *,
    auth: bool = True,
    retries: int | None = None,
    accept: tuple[int, ...] = (),
    deadline: float | None = None,
) -> Response:
    """GET `path` under the target's URL; retries connect errors, timeouts and 5xx with a short backoff.

    Statuses other than 2xx raise FetchError("http_status") unless listed in `accept`
    (e.g. llama.cpp's 503 while loading is an answer, not a failure). The target's `timeout`
    bounds the whole call, connect to last byte, retries included (a socket timeout is per
    read: a body trickling in at 1 byte/s would never end). `deadline` (`time.monotonic()`
    value) bounds it further, so a slow target still gets its `up=0` reported inside the gather.
    """
    url = url_for(target, path)
    shown = redact_url(url)
    where = f"GET {shown}"
    attempts = 1 + (target.retries if retries is None else retries)
    start = time.monotonic()
    end = start + target.timeout if deadline is None else min(start + target.timeout, deadline)
    last: FetchError | None = None
    for attempt in range(attempts):
        if attempt:
            backoff = _BACKOFF_S[min(attempt - 1, len(_BACKOFF_S) - 1)]
            if end - time.monotonic() < backoff + 0.05:
                break
            await asyncio.sleep(backoff)
        timeout = max(0.05, end - time.monotonic())
        try:
            return await within(_get_once(pool, target, url, shown, auth, accept), timeout)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one FetchError
            last = _classify(exc, where, round(end - start, 3))
            if not _retryable(last):
                raise last from None
    assert last is not None
    raise last from None


async def _get_once(
    pool: HttpPool, target: TargetConfig, url: str, shown: str, auth: bool, accept: tuple[int, ...]
) -> Response:
    limit = target.max_body_bytes
    try:
        answer = await pool.client(target).get(
            _request_target(url),
            headers_for(target, auth),
            limit,
            lambda s: not (200 <= s < 300) and s not in accept,
            shown,
        )
    except http11.Rejected as exc:
        raise FetchError(
            "http_status", f"GET {shown}: HTTP {exc.status}{_reason(exc.status, exc.reason)}", exc.status
        ) from None
    except http11.TooBig as exc:
        size = f"body of {exc.declared} bytes is" if exc.declared is not None else "body"
        raise FetchError("too_big", f"GET {shown}: {size} over max_body_bytes ({limit})") from None
    return answer


def _request_target(url: str) -> str:
    """The path and query of a URL, as the request line carries them."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _reason(status: int, phrase: str) -> str:
    if status == 401:
        return " (unauthorized: check bearer_token)"
    if status == 403:
        return " (forbidden)"
    return f" {phrase}" if phrase else ""
