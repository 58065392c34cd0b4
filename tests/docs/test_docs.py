"""The hand-written docs: a short README whose example output is what the agent writes, and links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from line_protocol_parser import parse_line

from telegraf_llm_input.schema import lookup

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_TYPE = {"int": int, "float": float, "string": str, "bool": bool}


def test_readme_is_short():
    assert len(README.read_bytes()) <= 10 * 1024, "the README holds the start; reference goes into docs/"


def test_readme_example_output_is_documented_line_protocol():
    section = README.read_text().split("## Example output", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    lines = block.splitlines()
    assert {parse_line(line)["measurement"] for line in lines} >= {"llm_server", "llm_host", "llm_agent"}
    for line in lines:
        point = parse_line(line)
        for name, value in point["fields"].items():
            doc = lookup(point["measurement"], name)
            assert doc is not None, f"{point['measurement']}.{name} in the README example is not in the schema"
            assert isinstance(value, PYTHON_TYPE[doc.type]), (point["measurement"], name, value, doc.type)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve()
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md":
            headings = {_anchor(h) for h in re.findall(r"(?m)^#+ (.+)$", resolved.read_text())}
            if anchor not in headings:
                broken.append(target)
    assert broken == []


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
