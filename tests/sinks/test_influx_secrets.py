"""No output error line ever holds a credential: the agent as a real process, writing to a real InfluxDB 1.x
with authentication on (wrong password, missing database, a field type conflict, bodies over its limit), to a
refused port and to a server that never answers, with the password in the URL, in `password:` and a v2
`token:`. Every path must be taken (its line is looked for), and no secret may be in any line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests.support.influxdb import InfluxDB1, influxd_binary
from tests.support.procs import free_port, wait_until

SECRETS = ("S3cretPW", "Wr0ngPW", "S3cretTok", "S3cr@tEnc")
PATHS = {
    "404 database not found, password in the URL": 'database "nosuchdb" does not exist on http://127.0.0.1:',
    "401 wrong password in the URL": "HTTP 401",
    "400 partial write, password in `password:`": "partial write",
    "413 body over the server's limit": "HTTP 413",
    "connection refused": "ConnectError",
    "no answer": "Timeout",
    "v2 API missing on a 1.x server, token": "output influxdb_v2:",
    "v2 connection refused, token": "output influxdb_v2_2:",
}


@pytest.fixture
def secured_influxdb(tmp_path, monkeypatch):
    if influxd_binary() is None:
        pytest.skip("influxd not installed: apt-get install influxdb (scripts/test.sh does)")
    monkeypatch.setenv("INFLUXDB_HTTP_AUTH_ENABLED", "true")  # influxd reads its settings from the environment too
    db = InfluxDB1(tmp_path / "influx", max_body_size=1500).start()
    auth = {"u": "admin", "p": "S3cretPW"}

    def query(q: str, **extra: str) -> None:
        httpx.post(f"{db.url}/query", params=extra, data={"q": q}, timeout=10).raise_for_status()

    query("CREATE USER admin WITH PASSWORD 'S3cretPW' WITH ALL PRIVILEGES")  # allowed while there is no user
    query('CREATE DATABASE "agentdb"', **auth)
    r = httpx.post(
        f"{db.url}/write", params={"db": "agentdb", **auth}, content=f'llm_agent gathers="x" {time.time_ns()}\n'
    )
    assert r.status_code == 204, r.text  # `gathers` is a string from now on: the agent's integers conflict
    yield db
    db.stop()


def test_no_output_error_line_holds_a_secret(tmp_path, secured_influxdb):
    db = secured_influxdb
    host = f"127.0.0.1:{db.http_port}"
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connects, never answers
    refused = free_port()
    common = {"timeout": "500ms", "flush_interval": "200ms"}
    outputs = [
        {"type": "influxdb_v1", "url": f"http://admin:S3cretPW@{host}", "database": "nosuchdb"},
        {"type": "influxdb_v1", "url": f"http://admin:Wr0ngPW@{host}", "database": "agentdb"},
        {
            "type": "influxdb_v1",
            "url": f"http://{host}",
            "username": "admin",
            "password": "S3cretPW",
            "database": "agentdb",
        },
        {"type": "influxdb_v1", "url": f"http://admin:S3cr%40tEnc@127.0.0.1:{refused}/"},
        {"type": "influxdb_v1", "url": f"http://admin:S3cretPW@127.0.0.1:{silent.getsockname()[1]}"},
        {"type": "influxdb_v2", "url": f"http://{host}", "bucket": "agentdb", "token": "S3cretTok"},
        {"type": "influxdb_v2", "url": f"http://127.0.0.1:{refused}", "bucket": "b", "token": "S3cretTok"},
    ]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "agent": {"interval": "300ms", "state_dir": str(tmp_path / "state"), "log_level": "debug"},
                "targets": [],
                "outputs": [{**common, **out} for out in outputs],
            }
        )
    )
    err = tmp_path / "stderr"
    with open(err, "wb") as stderr:
        agent = subprocess.Popen(
            [sys.executable, "-m", "telegraf_llm_input", "--config", str(cfg), "--signal", "none"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_until(lambda: all(want in err.read_text() for want in PATHS.values()), 60, "every error path", agent)
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        silent.close()
    lines = err.read_text().splitlines()
    leaked = [line for line in lines if any(secret in line for secret in SECRETS)]
    assert leaked == [], leaked
    assert "S3cr%40tEnc" not in "".join(lines)
