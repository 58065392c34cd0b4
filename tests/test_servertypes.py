"""The server registry is the one list: the config, the adapters, the fakes and the docs all agree with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from telegraf_llm_input.config.targets import DiscoveryConfig
from telegraf_llm_input.docs.configref import keys
from telegraf_llm_input.servers import module
from telegraf_llm_input.servers.base import Rule
from telegraf_llm_input.servertypes import DEFAULT_PORTS, SERVERS, TYPES, ServerType
from tests.fakes.life import KINDS, ROUTES

ROOT = Path(__file__).resolve().parents[1]


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_config_type_literal_is_auto_and_the_registry():
    assert get_args(ServerType) == ("auto", *TYPES)
    assert len(set(TYPES)) == len(TYPES)


def test_every_type_has_its_module():
    for server in SERVERS:
        mod = module(server.type)
        assert server.type == mod.TYPE, server
        assert isinstance(mod.NAME, str) and mod.NAME, server
        assert callable(mod.make), server
        assert all(isinstance(rule, Rule) for rule in getattr(mod, "DETECT", ())), server


def test_every_type_has_a_fake_that_lives_its_life():
    assert list(ROUTES) == list(TYPES), "tests/fakes/life.py ROUTES: one fake per server type, in registry order"
    assert [k.type for k in KINDS] == [*TYPES, "auto"]


def test_every_type_has_a_row_in_docs_servers():
    rows = _section((ROOT / "docs" / "servers.md").read_text(), "Per server")
    bold = set(re.findall(r"^- \*\*(.+?)\*\*", rows, re.M))
    missing = [s.type for s in SERVERS if not ({s.type, module(s.type).NAME} & bold or f"`type: {s.type}`" in rows)]
    assert missing == [], "docs/servers.md, ## Per server: a bullet `- **NAME**` (or `type: X`) per server type"


def test_default_ports_are_documented_where_users_read_them():
    (docs,) = [k.meaning for k in keys(DiscoveryConfig) if k.key == "ports"]
    discovery = _section((ROOT / "docs" / "servers.md").read_text(), "Finding the server type")
    for server_type, port in DEFAULT_PORTS.items():
        said = f"{module(server_type).NAME} {port}"
        assert said in docs, f"DiscoveryConfig.ports docstring lacks {said!r}"
        assert said in discovery, f"docs/servers.md discovery lacks {said!r}"
    assert DiscoveryConfig().ports == sorted(set(DEFAULT_PORTS.values()))
