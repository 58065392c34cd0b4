import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parent.parent / "packaging" / "systemd" / "telegraf-llm-input.service"


def test_unit_has_the_hardening():
    text = UNIT.read_text()
    for line in (
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=telegraf-llm-input",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "DevicePolicy=closed",
        "DeviceAllow=char-nvidia-frontend rw",
        "EnvironmentFile=-/etc/telegraf-llm-input/env",
        "--config /etc/telegraf-llm-input/config.yaml",
        # what the service user needs, measured (tests/sources/test_visibility.py): exactly these
        "AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH",
        "CapabilityBoundingSet=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH",
        "SupplementaryGroups=systemd-journal",
    ):
        assert line in text, line


def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd): cannot verify the unit")
    # The real binary is not installed here: point ExecStart at one that exists, keep everything else.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/telegraf-llm-input/bin/telegraf-llm-input", "/bin/true"))
    r = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (r.stdout + r.stderr).splitlines() if UNIT.name in line]
    assert problems == [], "\n".join(problems)
    broken = tmp_path / "broken" / UNIT.name  # the check itself can fail
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    r = subprocess.run([tool, "verify", "--man=no", str(broken)], capture_output=True, text=True, timeout=60)
    assert any(UNIT.name in line for line in (r.stdout + r.stderr).splitlines())
