import re
import shutil
import subprocess
from pathlib import Path

import pytest

from telegraf_llm_input.install import linux_layout, render_unit

UNIT = Path(__file__).parent.parent / "packaging" / "systemd" / "telegraf-llm-input.service"


def test_unit_has_the_hardening():
    text = UNIT.read_text()
    for line in (
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=telegraf-llm-input",
        "ProtectSystem=strict",
        "ProtectHome=read-only",  # a user's Ollama logs to ~/.ollama/logs/server.log
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


def systemd_problems(source: Path, tmp_path: Path, text: str | None = None) -> list[str]:
    """What `systemd-analyze verify` says about a unit file (skips where it is not installed). The real binary is
    not installed here: ExecStart points at one that exists, everything else is kept."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd): cannot verify the unit")
    unit = tmp_path / source.name
    unit.write_text((text or source.read_text()).replace("/opt/telegraf-llm-input/bin/telegraf-llm-input", "/bin/true"))
    r = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    return [line for line in (r.stdout + r.stderr).splitlines() if source.name in line]


def test_systemd_analyze_verify(tmp_path):
    assert systemd_problems(UNIT, tmp_path) == []
    broken = tmp_path / "broken"  # the check itself can fail
    broken.mkdir()
    assert systemd_problems(UNIT, broken, UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes"))


def test_install_service_writes_this_unit():
    assert render_unit(linux_layout()).rstrip() == UNIT.read_text().rstrip()


def test_home_directories_are_readable_and_nothing_else_opens(tmp_path):
    """ProtectHome=yes hid a user's Ollama log (~/.ollama/logs/server.log); read-only lets the agent read it (with
    CAP_DAC_READ_SEARCH past the 0700 home) and write nothing there. `systemd-analyze security` weighs the change."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")

    def security(text: str) -> tuple[str, float]:
        unit = tmp_path / UNIT.name
        unit.write_text(text.replace("/opt/telegraf-llm-input/bin/telegraf-llm-input", "/bin/true"))
        r = subprocess.run(
            [tool, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True, timeout=60
        )
        [home] = [line for line in r.stdout.splitlines() if "ProtectHome=" in line]
        [overall] = re.findall(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
        return home, float(overall)

    text = UNIT.read_text()
    home, exposure = security(text)
    assert "read-only access to home directories" in home, home
    hidden_home, hidden_exposure = security(text.replace("ProtectHome=read-only", "ProtectHome=yes"))
    assert "no access to home directories" in hidden_home
    assert exposure - hidden_exposure <= 0.1 + 1e-9  # the one item, nothing else loosened
