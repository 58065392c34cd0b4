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
