"""Regenerate the README schema table from telegraf_llm_input/schema/."""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from telegraf_llm_input.schema import markdown  # noqa: E402
from telegraf_llm_input.servers import field_servers  # noqa: E402

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
new = re.sub(r"<!-- schema:start -->\n.*<!-- schema:end -->",
             lambda _: "<!-- schema:start -->\n" + markdown(field_servers()) + "<!-- schema:end -->", text, flags=re.S)
readme.write_text(new)
print("README schema table updated" if new != text else "README schema table already current")
