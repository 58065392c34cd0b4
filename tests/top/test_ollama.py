"""`top --count 2 | cat` on an Ollama fake that writes its server log: the loaded model, offload, VRAM, the
unload countdown, requests/s, e2e p95 and errors from the log."""

from __future__ import annotations

import threading
import time

import httpx
import yaml

from tests.fakes.serverlogs import LoggingOllama, OllamaLog
from tests.top.test_app import block, frames
from tests.top.test_cli import top_twice

MODEL = {
    "name": "qwen2.5:7b",
    "model": "qwen2.5:7b",
    "size": 6 * 1024**3,
    "size_vram": int(4.5 * 1024**3),
    "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 3600)),  # keep_alive 3h
}


def test_top_shows_ollamas_model_and_its_logs_numbers(tmp_path):
    log = OllamaLog(tmp_path / "server.log")
    log.path.write_text("")
    stop = threading.Event()
    with LoggingOllama(log, [MODEL], latencies_ms=[250.0, 1500.0, 40.0]) as fake:
        config = tmp_path / "top.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "targets": [{"url": fake.url, "type": "ollama", "name": "ol", "log": str(log.path)}],
                    "gpu": {"enabled": False},
                    "agent": {"hostname": "box"},
                }
            )
        )

        def traffic():
            with httpx.Client(base_url=fake.url) as client:
                while not stop.wait(0.05):
                    client.post("/api/chat", json={"model": "qwen2.5:7b", "messages": []})

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        try:
            proc = top_twice(config)
        finally:
            stop.set()
            sender.join()
    assert proc.returncode == 0, proc.stderr
    _, second = frames(proc.stdout)
    ol = block(second, "ol")
    assert "ol  ollama  qwen2.5:7b" in ol
    assert "model qwen2.5:7b" in ol and "size 6.0 GiB" in ol and "vram 4.5 GiB" in ol and "gpu 75%" in ol
    assert "unload in 3h" in ol
    assert "req " in ol and "/s" in ol and "e2e p50" in ol and "p95 " in ol
    assert "run -" not in ol and "gen - tok/s" not in ol  # what Ollama cannot say is not shown as dashes
    assert "requests unseen" not in ol  # its log is read


def test_top_says_why_ollamas_requests_are_unseen(tmp_path):
    """Ollama counts requests nowhere but in its log: without it, `req -` would look like warming up forever."""
    with LoggingOllama(OllamaLog(tmp_path / "server.log"), [MODEL]) as fake:
        config = tmp_path / "top.yaml"
        targets = [
            {"url": fake.url, "type": "ollama", "name": "off", "log": "none"},
            {"url": fake.url, "type": "ollama", "name": "typo", "log": str(tmp_path / "nowhere" / "server.log")},
        ]
        config.write_text(yaml.safe_dump({"targets": targets, "gpu": {"enabled": False}}))
        proc = top_twice(config)
    assert proc.returncode == 0, proc.stderr
    _, second = frames(proc.stdout)
    assert "requests unseen: `log: none` in the config" in block(second, "off")
    assert "requests unseen: its log file does not exist (yet)" in block(second, "typo")
