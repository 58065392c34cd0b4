"""The upstream model server's address, as `--upstream` gives it (install.py checks it without loading the proxy)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


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
