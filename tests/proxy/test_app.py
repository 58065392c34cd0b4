"""`telegraf-llm-input proxy` as a user runs it: bad options get one clear line, the service stops on SIGTERM,
and its logs never carry a secret or a prompt."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.fakes.streaming import Script, StreamingServer
from tests.support.proxy import ProcessProxy


def run(*args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "telegraf_llm_input", "proxy", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_bad_options_get_one_clear_line_and_exit_2():
    for args, said in (
        (("--upstream", "ftp://x"), "--upstream"),
        (("--upstream", "http://127.0.0.1:1", "--listen", "nowhere"), "--listen"),
        (("--upstream", "http://127.0.0.1:1", "--timeout", "soon"), "--timeout"),
    ):
        r = run(*args)
        assert r.returncode == 2 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_command_serves_logs_no_secret_and_stops_on_sigterm(tmp_path):
    with StreamingServer(Script(ttft_s=0.0, interval_s=0.0)) as fake:
        proxy = ProcessProxy(fake.url, tmp_path, "--timeout", "30s").start()
        try:
            r = httpx.post(
                proxy.url + "/v1/chat/completions",
                json={
                    "model": "fake-model",
                    "messages": [{"role": "user", "content": "my secret prompt"}],
                    "stream": True,
                },
                headers={"Authorization": "Bearer tok-12345"},
                timeout=10,
            )
            assert r.status_code == 200
            assert proxy.process is not None
        finally:
            proxy.stop()
        assert proxy.process.proc.returncode == 0
        log = proxy.log.read_text()
        assert f"listening on http://127.0.0.1:{proxy.port}, forwarding to {fake.url}" in log and "stopped" in log
        assert "tok-12345" not in log and "secret prompt" not in log


def test_without_the_proxy_extra_one_line_says_what_to_install_and_exit_2():
    # the extra's modules made unimportable in the child, as in an install without `[proxy]`
    block = "import sys; sys.modules['httptools'] = None"
    code = f"{block}; from telegraf_llm_input.cli import main; sys.exit(main(['proxy', '--upstream', 'http://x:1']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "pip install 'telegraf-llm-input[proxy]'" in r.stderr and "httptools" in r.stderr
