"""Nobody reads stdout (Telegraf stalled): the agent as a real subprocess with a full stdout pipe,
writing to a real InfluxDB at the same time. Gathers go on, InfluxDB keeps getting them, stdin EOF
still stops the agent promptly, and the gathers that could not be written are counted."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import yaml

from tests.support.procs import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
F_SETPIPE_SZ = 1031  # Linux


def agent_points(db, name):
    res = db.query('SELECT gathers, stdout_dropped_gathers, "source", "output" FROM llm_agent', db=name)["results"][0]
    rows = res["series"][0]["values"] if "series" in res else []
    return [(row[1], row[2]) for row in rows if row[3] is None and row[4] is None]


def test_stalled_stdout_stalls_nothing_else(influxdb, tmp_path):
    influxdb.create_db("stall")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "agent": {"interval": "100ms"},
                "targets": [],
                "host": {"model_dir": str(tmp_path)},
                "outputs": [
                    {"type": "stdout"},
                    {"type": "influxdb_v1", "url": influxdb.url, "database": "stall", "flush_interval": "200ms"},
                ],
            }
        )
    )
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    except OSError:
        pass  # a bigger pipe only makes the test slower to stall
    err = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "telegraf_llm_input", "--config", str(cfg), "--signal", "none"],
        stdin=subprocess.PIPE,
        stdout=write_end,
        stderr=err,
        cwd=ROOT,
    )
    os.close(write_end)
    try:
        # Nobody reads stdout: after a few gathers the pipe is full, yet InfluxDB keeps getting gathers.
        wait_until(
            lambda: any((d or 0) > 0 for _, d in agent_points(influxdb, "stall")),
            60,
            "gathers dropped from the stalled stdout",
            proc,
        )
        seen = max(g for g, _ in agent_points(influxdb, "stall"))
        wait_until(
            lambda: max(g for g, _ in agent_points(influxdb, "stall")) >= seen + 5,
            30,
            "gathers reaching InfluxDB while stdout is stalled",
            proc,
        )
        closed = time.monotonic()
        proc.stdin.close()  # Telegraf stopping: EOF must still be noticed
        code = proc.wait(15)
        elapsed = time.monotonic() - closed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(read_end)
        err.close()
    stderr = (tmp_path / "stderr").read_text().splitlines()
    print(f"exit after stdin EOF with stdout stalled: {elapsed:.2f}s")
    assert code == 0, stderr
    assert elapsed < 5.0, "Telegraf would have had to SIGTERM us"
    stalled = [line for line in stderr if "nobody reads stdout" in line]
    assert len(stalled) == 1 and stalled[0].startswith("W! ")
    assert all(line[:3] in ("E! ", "W! ", "I! ", "D! ") for line in stderr)
