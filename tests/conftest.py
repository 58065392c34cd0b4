from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support.influxdb import InfluxDB1, influxd_binary


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory):
    """A real InfluxDB 1.x for the whole test session (skipped loudly if not installed)."""
    if influxd_binary() is None:
        pytest.skip("influxd not installed: run `apt-get install influxdb` (scripts/test.sh does)")
    server = InfluxDB1(tmp_path_factory.mktemp("influxdb")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _checkout_reachable_by_other_users():
    """Tests that run the agent as another user (setpriv) need the checkout and its .venv: a clone in a
    `mktemp -d` folder (0700) hides them. As root, open the way (x on each folder above, r too on the
    checkout itself) for the session and put every mode back afterwards."""
    if os.geteuid() != 0:
        yield
        return
    root = Path(__file__).resolve().parent.parent
    changed: list[tuple[Path, int]] = []
    for folder, wanted in [(root, stat.S_IROTH | stat.S_IXOTH), *((p, stat.S_IXOTH) for p in root.parents)]:
        mode = stat.S_IMODE(folder.stat().st_mode)
        if mode & wanted != wanted:
            folder.chmod(mode | wanted)
            changed.append((folder, mode))
    yield
    for folder, mode in changed:
        folder.chmod(mode)


@pytest.fixture(autouse=True)
def _restore_logging():
    """`main()` run in-process configures logging for real (no propagation to root); undo it after each
    test so later tests' caplog still sees records."""
    import logging

    ours = logging.getLogger("telegraf_llm_input")
    root = logging.getLogger()
    saved = (ours.handlers[:], ours.level, ours.propagate, root.handlers[:], root.level)
    yield
    ours.handlers[:], ours.level, ours.propagate = saved[0], saved[1], saved[2]
    root.handlers[:], root.level = saved[3], saved[4]
    logging.captureWarnings(False)
