"""The README schema table is generated from the schema package and must stay in step with it."""

import re
from pathlib import Path

from telegraf_llm_input.schema import ALL, markdown
from telegraf_llm_input.servers import field_servers

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_schema_table_is_current():
    text = README.read_text()
    match = re.search(r"<!-- schema:start -->\n(.*)<!-- schema:end -->", text, re.S)
    assert match, "README lacks the schema markers"
    assert match.group(1) == markdown(field_servers()), "README schema table is stale: run `python scripts/update_readme_schema.py`"


def test_measurement_names_are_unique_and_fields_documented():
    names = [m.name for m in ALL]
    assert len(names) == len(set(names))
    for m in ALL:
        fields = [f.name for f in m.fields]
        assert len(fields) == len(set(fields)), m.name
        for f in m.fields:
            assert f.unit is not None and f.meaning, (m.name, f.name)
