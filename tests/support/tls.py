"""A self-signed certificate for 127.0.0.1 (the openssl command) and a FakeServer that speaks TLS with it."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from tests.fakes.server import FakeServer


def self_signed(directory: Path) -> Path:
    """`cert.pem` (also the CA a client must trust) and `key.pem` in `directory`; returns the directory."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return directory


def serve_tls(fake: FakeServer, tls_files: Path) -> str:
    """Wraps the (not yet started) fake's socket in TLS with the certificate; its https:// URL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files / "cert.pem", tls_files / "key.pem")
    fake._httpd.socket = context.wrap_socket(fake._httpd.socket, server_side=True)
    return f"https://127.0.0.1:{fake.port}"
