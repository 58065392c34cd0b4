"""The request-log source while the real logrotate rotates its file: every request counted once.

(The issue's case: `path: app.log*` with `copytruncate` counted 67 requests for 27 written.)
Skipped where logrotate is not installed (`apt-get install logrotate`); tests/test_tailer_rotation.py
covers the same rotations done by hand."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from tests.sources.test_requestlog import Run

LOGROTATE = shutil.which("logrotate") or (
    "/usr/sbin/logrotate" if shutil.os.path.exists("/usr/sbin/logrotate") else None
)


def rotate(tmp_path, log, options: str) -> None:
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n  rotate 5\n  missingok\n  {options}\n}}\n")
    conf.chmod(0o644)
    r = subprocess.run(
        [LOGROTATE, "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def write(log, start, count):
    with open(log, "a") as f:
        for i in range(start, start + count):
            f.write(
                json.dumps({"duration_ms": 100 + i, "prompt_tokens": 10, "status": "success", "id": f"request-{i:06d}"})
                + "\n"
            )
    return start + count


@pytest.mark.parametrize(
    "path,options",
    [
        ("app.log*", "copytruncate\n  nocompress"),
        ("app.log*", "copytruncate\n  compress\n  delaycompress"),
        ("app.log", "copytruncate\n  nocompress"),
        ("app.log", "copytruncate\n  dateext\n  dateformat -%Y%m%d-%s"),
        ("app.log*", "create\n  compress\n  delaycompress"),
        ("app.log", "create\n  nocompress"),
    ],
    ids=[
        "glob-copytruncate",
        "glob-copytruncate-delaycompress",
        "copytruncate",
        "copytruncate-dateext",
        "glob-create-delaycompress",
        "create",
    ],
)
def test_every_request_counted_once_across_logrotate(tmp_path, path, options):
    if LOGROTATE is None:
        pytest.skip("logrotate not installed: apt-get install logrotate")
    log = tmp_path / "app.log"
    n = write(log, 0, 10)
    run = Run(tmp_path, {"path": str(tmp_path / path), "from": "beginning"})
    counted = sum(m.fields.get("requests", 0) for m in run.gather())
    for _ in range(4):
        n = write(log, n, 7)  # written since the last gather: in the rotated copy only, for copytruncate
        if "dateext" in options:
            time.sleep(1.05)  # its names have a resolution of one second
        rotate(tmp_path, log, options)
        n = write(log, n, 3)
        got = run.gather()
        counted += sum(m.fields.get("requests", 0) for m in got)
        assert sum(m.fields.get("malformed_lines", 0) for m in got) == 0  # no compressed copy read as text
    counted += sum(m.fields.get("requests", 0) for m in run.gather())
    run.close()
    assert counted == n
