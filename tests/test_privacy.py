"""End to end: no secret and no prompt or response text ever reaches stdout or stderr.

The real agent runs as Telegraf runs it, at debug level, against targets that need a token, get the
wrong one, carry a password in the URL, lie (a 500 whose body echoes the secrets back), and a
streaming server answering a probe with a distinctive prompt and answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.fakes.llm import Snap, fake_llamacpp, fake_vllm, llamacpp_metrics, vllm_page
from tests.fakes.server import FakeServer, Reply
from tests.fakes.streaming import Script, StreamingServer
from tests.support.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-SECRET-9f2c51"
HEADER_SECRET = "hdr-SECRET-77aa03"
URL_PASSWORD = "pw-SECRET-1234ab"
PROMPT = "PRIVATE-PROMPT-7f3a"
ANSWER = "RESPONSE-TEXT-c0de"
SECRETS = (TOKEN, HEADER_SECRET, URL_PASSWORD, PROMPT, ANSWER)
PREFIXES = ("E! ", "W! ", "I! ", "D! ")


def run_agent(config: dict, tmp_path: Path, gathers: int = 3, pause: float = 1.5) -> tuple[str, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telegraf_llm_input",
            "--config",
            str(path),
            "--signal",
            "stdin",
            "--log-level",
            "debug",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    for _ in range(gathers):
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        time.sleep(pause)
    proc.stdin.close()  # Telegraf stopping us
    proc.stdin = None  # communicate() must not flush the closed pipe
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(), err.decode()


def test_no_secret_and_no_prompt_or_response_text_in_any_output(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    echo = f"Authorization: Bearer {TOKEN}; X-Api-Secret: {HEADER_SECRET}; prompt: {PROMPT}; {URL_PASSWORD}"
    good = fake_llamacpp(llamacpp_metrics(10, 20, 1.0, 2.0), api_key=TOKEN)
    wrong = fake_llamacpp(llamacpp_metrics(10, 20, 1.0, 2.0), api_key="some-other-key")
    liar = FakeServer({"/metrics": Reply(echo, status=500), "/v1/models": Reply(echo, status=500)})
    creds = fake_vllm(vllm_page({"m": Snap(prompt=5)}))
    stream = StreamingServer(Script(ttft_s=0.05, interval_s=0.01, answer=(f" {ANSWER}",) * 5))
    for server in (good, wrong, liar, creds):
        server.start()
    stream.__enter__()
    try:
        headers = {"X-Api-Secret": HEADER_SECRET}
        config = {
            "agent": {"state_dir": str(tmp_path / "state")},
            "host": {"enabled": False},
            "gpu": {"enabled": False},
            "targets": [
                {
                    "url": good.url,
                    "type": "llamacpp",
                    "name": "good",
                    "bearer_token_file": str(token_file),
                    "headers": headers,
                },
                {"url": wrong.url, "type": "llamacpp", "name": "wrong", "bearer_token_file": str(token_file)},
                {"url": liar.url, "name": "liar", "bearer_token_file": str(token_file), "headers": headers},
                {"url": creds.url.replace("http://", f"http://admin:{URL_PASSWORD}@"), "type": "vllm"},
                {
                    "url": f"http://127.0.0.1:{free_port()}",
                    "type": "vllm",
                    "name": "down",
                    "bearer_token_file": str(token_file),
                },
                {
                    "url": stream.url,
                    "type": "openai",
                    "name": "probed",
                    "bearer_token_file": str(token_file),
                    "headers": headers,
                    "probe": {"enabled": True, "every": "1s", "prompt": PROMPT, "max_tokens": 16},
                },
            ],
        }
        out, err = run_agent(config, tmp_path)
    finally:
        for server in (good, wrong, liar, creds):
            server.stop()
        stream.__exit__(None, None, None)

    # The features ran: the token opened the protected server, the probe streamed its answer.
    assert any(
        line.startswith("llm_server,") and "target=good" in line and "up=1i" in line for line in out.splitlines()
    ), out[-3000:]
    assert any(
        line.startswith("llm_probe,") and "target=probed" in line and "success=1i" in line for line in out.splitlines()
    ), out[-3000:]
    assert any(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in good.requests)
    assert any(PROMPT in json.dumps(r.body) for r in stream.posts())  # the prompt did go to the server
    # ...and the failures were reported.
    assert "wrong" in err and "liar" in err and "down" in err

    for secret in SECRETS:
        assert secret not in out, f"{secret} leaked to stdout"
        assert secret not in err, f"{secret} leaked to stderr"
    for line in err.splitlines():
        assert line.startswith(PREFIXES), f"stderr line without a level prefix: {line!r}"
    state = tmp_path / "state"
    if state.exists():
        for f in state.rglob("*"):
            if f.is_file():
                text = f.read_bytes()
                assert not any(s.encode() in text for s in SECRETS), f"secret in state file {f}"
