"""Every field a standard server type can emit is documented by name in schema/server.py."""

from pathlib import Path

from telegraf_llm_input.promtext import parse
from telegraf_llm_input.schema import lookup
from telegraf_llm_input.servers import module
from telegraf_llm_input.servers.promtable import read_page
from telegraf_llm_input.servertypes import TYPES
from telegraf_llm_input.sources.target import Baseline, derive

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus"


def test_all_fields_from_fixture_pages_are_documented():
    seen = set()
    tables = [t for t in TYPES if hasattr(module(t), "TABLE")]
    for server_type in tables:
        fixtures = sorted(FIXTURES.glob(f"{server_type}.txt")) + sorted(FIXTURES.glob(f"{server_type}_*.txt"))
        assert fixtures, f"{server_type}: a recorded page in tests/fixtures/prometheus/ (its source in the README)"
        for fixture in fixtures:
            page = parse(fixture.read_text())
            for reading in read_page(module(server_type).TABLE, page, "m"):
                # a baseline of zeros: every counter moved, every histogram observed something
                fields = derive(Baseline.zero(reading, 0), reading, 10 * 10**9).fields
                if reading.counters:
                    assert any(k.endswith("_per_s") for k in fields), fixture
                if set(reading.histograms) - reading.count_histograms:  # timings (llama.cpp has none)
                    assert any(k.endswith("_p95_ms") for k in fields), fixture
                seen |= set(fields)
    seen |= {
        "up",
        "busy",
        "loading",
        "scrape_ms",
        "slots_total",
        "slots_busy",
        "context_used_ratio",
        "models_loaded",
        "error_ratio",
    }
    undocumented = sorted(
        f for f in seen if (lookup("llm_server", f) or None) is None or lookup("llm_server", f).name == "*"
    )
    assert undocumented == []
    for f in ("size_bytes", "vram_bytes", "gpu_offload_ratio", "context_length", "seconds_until_unload"):
        assert lookup("llm_model_loaded", f) is not None


def test_health_fields_on_every_servers_points_are_not_documented_as_one_servers():
    """`busy`/`loading` are on every server's points (0 where nothing sets them): no `(llama.cpp)` note."""
    from telegraf_llm_input.schema import markdown
    from telegraf_llm_input.servers.fields import field_servers

    servers = field_servers()
    assert "busy" not in servers and "loading" not in servers
    rows = [line for line in markdown(servers).splitlines() if "| `busy` |" in line or "| `loading` |" in line]
    assert len(rows) == 2 and all("every server's points" in row and "(llama.cpp)" not in row for row in rows)
