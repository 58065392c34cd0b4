"""The upstream model server: its address, and a few idle keep-alive connections to it.

An idle connection is reused only while young (IDLE_S: llama-server drops its own after 5 s, Go servers
later) and not closed by the server meanwhile; a request that still finds a dead one is retried once on a
fresh connection when nothing of the answer arrived and its body was small enough to keep (Proxy).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from telegraf_llm_input import h11io
from telegraf_llm_input.proxy.h11stream import H11Stream, UpstreamClosed

IDLE_S = 4.0
MAX_IDLE = 64
"""Idle connections kept: one per concurrent stream of a busy server, more is waste."""


class UpstreamError(Exception):
    """The upstream could not be reached. `kind`: refused, timeout, tls, unreachable."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Address:
    scheme: str
    host: str
    port: int
    prefix: str
    """Path the upstream URL had (`/ollama` behind a gateway), put before every request's target."""

    @classmethod
    def parse(cls, url: str) -> Address:
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http:// or https:// URL, got {url!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("upstream URL: only scheme, host, port and a path prefix")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def authority(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return (host if self.port == default else f"{host}:{self.port}").encode("ascii")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority.decode()}{self.prefix}"


class Upstream:
    def __init__(self, address: Address, connect_timeout_s: float = 5.0, tls: ssl.SSLContext | None = None):
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.tls = tls if tls is not None or address.scheme == "http" else ssl.create_default_context()
        self._idle: list[tuple[float, H11Stream]] = []

    def idle(self) -> H11Stream | None:
        """A kept connection fit for reuse, or None."""
        now = time.monotonic()
        while self._idle:
            since, stream = self._idle.pop()
            if now - since < IDLE_S and not stream.reader.at_eof() and not stream.writer.transport.is_closing():
                return stream
            stream.abort()
        return None

    async def connect(self) -> H11Stream:
        a = self.address
        try:
            reader, writer = await asyncio.wait_for(
                h11io.open_connection(a.host, a.port, self.tls), self.connect_timeout_s
            )
        except asyncio.TimeoutError:
            raise UpstreamError("timeout", f"no connection to {a} within {self.connect_timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise UpstreamError("tls", f"TLS with {a} failed: {exc.reason or exc}") from None
        except ConnectionRefusedError:
            raise UpstreamError("refused", f"{a} refused the connection") from None
        except OSError as exc:
            raise UpstreamError("unreachable", f"{a}: {exc.strerror or exc}") from None
        return H11Stream(h11.CLIENT, reader, writer, UpstreamClosed)

    def release(self, stream: H11Stream) -> None:
        """Keep a connection whose exchange finished cleanly (and that received nothing more) for the next
        request; close any other."""
        reader = stream.reader
        if len(self._idle) < MAX_IDLE and isinstance(reader, h11io.Reader) and h11io.clean(stream.conn, reader):
            self._idle.append((time.monotonic(), stream))
        else:
            stream.abort()

    def close(self) -> None:
        for _, stream in self._idle:
            stream.abort()
        self._idle.clear()
