"""The launchd job: a valid plist (plistlib reads what launchd reads) with the systemd unit's intent."""

import plistlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLIST = ROOT / "packaging" / "launchd" / "org.telegraf-llm-input.agent.plist"


def test_plist_parses_and_runs_the_agent_standalone_as_its_own_user():
    job = plistlib.loads(PLIST.read_bytes())
    assert job["Label"] == PLIST.stem
    args = job["ProgramArguments"]
    assert args[0].endswith("/telegraf-llm-input") and args[args.index("--signal") + 1] == "none"
    assert args[args.index("--config") + 1].endswith("/telegraf-llm-input/config.yaml")
    assert job["UserName"] == "_llmmon" and job["GroupName"] == "_llmmon"  # never root
    assert job["KeepAlive"] == {"SuccessfulExit": False} and job["ThrottleInterval"] >= 5  # restart on failure
    assert job["StandardErrorPath"].endswith(".log") and job["StandardOutPath"] == job["StandardErrorPath"]
    assert job["Umask"] == 0o077 and job["ProcessType"] == "Background"
    # lsof and ioreg are found on the job's PATH
    assert {"/usr/sbin", "/usr/bin"} <= set(job["EnvironmentVariables"]["PATH"].split(":"))


def test_the_command_line_it_runs_is_accepted_by_the_agent(tmp_path):
    job = plistlib.loads(PLIST.read_bytes())
    args = job["ProgramArguments"][1:]
    config = tmp_path / "config.yaml"
    config.write_text("targets: []\nhost: {enabled: false}\ngpu: {enabled: false}\n")
    args[args.index("--config") + 1] = str(config)
    r = subprocess.run(
        [sys.executable, "-m", "telegraf_llm_input", *args, "check-config"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
