from __future__ import annotations

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
