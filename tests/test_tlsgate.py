"""asyncio without ssl until TLS is used: a plain agent loads no ssl; an https target works, verified by default,
whether the program starts with it or meets it later (each in a fresh interpreter: this one has ssl loaded)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fakes.server import FakeServer, Reply
from tests.support.procs import free_port
from tests.support.tls import self_signed, serve_tls

PAGE = "# TYPE x_total counter\nx_total 3\n"

# The program's start-up (tlsgate), a plain scrape, then an https target met later: untrusted, then with its CA.
LATER = r"""
import json, sys
import telegraf_llm_input.__main__
import asyncio
from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.http import FetchError, HttpPool, get

async def main(plain, url, ca):
    pool = HttpPool()
    try:
        await get(pool, TargetConfig(url=plain, retries=0), "/metrics")
        seen = ["ssl" in sys.modules, "_ssl" in sys.modules, asyncio.sslproto.ssl is not None]
        try:
            await get(pool, TargetConfig(url=url, retries=0), "/metrics")
            seen.append("accepted")
        except FetchError as exc:
            seen.append(exc.kind)
        seen.append((await get(pool, TargetConfig(url=url, tls_ca=ca, retries=0), "/metrics")).text())
        seen.append(asyncio.sslproto.ssl is not None)
    finally:
        await pool.close()
    print(json.dumps(seen))

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


def test_ssl_loads_when_an_https_target_is_met_later(tls_files):
    plain, secure = FakeServer({"/metrics": Reply(PAGE)}), FakeServer({"/metrics": Reply(PAGE)})
    url = serve_tls(secure, tls_files)
    with plain, secure:
        out = subprocess.run(
            [sys.executable, "-c", LATER, f"http://127.0.0.1:{plain.port}", url, str(tls_files / "cert.pem")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert json.loads(out.stdout) == [False, False, False, "tls", PAGE, True]


def test_an_https_target_in_the_config_is_scraped_and_verified(tls_files, tmp_path):
    secure = FakeServer({"/metrics": Reply(PAGE)})
    url = serve_tls(secure, tls_files)
    config = tmp_path / "config.yaml"
    targets = (
        f"  - {{url: '{url}', type: prometheus, name: trusted, tls_ca: '{tls_files / 'cert.pem'}', retries: 0}}\n"
        f"  - {{url: '{url}', type: prometheus, name: untrusted, retries: 0}}\n"
    )
    config.write_text(
        "host: {enabled: false}\ngpu: {enabled: false}\n"
        f"discovery: {{enabled: true, ports: [{free_port()}]}}\ntargets:\n{targets}"
    )
    with secure:
        out = subprocess.run(
            [sys.executable, "-m", "telegraf_llm_input", "--config", str(config), "--once"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    ups = {
        line.split("target=")[1].split(",")[0].split(" ")[0]: " up=1i" in line or ",up=1i" in line
        for line in out.stdout.splitlines()
        if "target=" in line and "up=" in line
    }
    assert ups == {"trusted": True, "untrusted": False}
    assert "TLS" in out.stderr and "untrusted" in out.stderr
