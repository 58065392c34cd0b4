"""The `proxy` command's options: declared apart from the proxy, so parsing any command line loads none of it."""

from __future__ import annotations

import argparse
import importlib.util

from telegraf_llm_input.servertypes import DEFAULT_PORTS

DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORTS['proxy']}"
DEFAULT_UPSTREAM = f"http://127.0.0.1:{DEFAULT_PORTS['ollama']}"
"""The proxy service's upstream when `install-service --proxy` is not told: Ollama on its own port."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--upstream",
        metavar="URL",
        required=True,
        help="the model server to forward to, e.g. http://127.0.0.1:11435 (Ollama moved off 11434)",
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"where clients connect (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--timeout",
        metavar="DURATION",
        default="10m",
        help="longest wait for the upstream's answer to start, and between two of its pieces (default 10m: a long "
        "prompt's prefill on local hardware takes minutes)",
    )
    parser.add_argument(
        "--connect-timeout", metavar="DURATION", default="5s", help="longest wait to connect upstream (default 5s)"
    )


EXTRA = ("httptools",)
"""What the proxy cannot run without, of what its extra installs: llhttp's parser (both sides' HTTP). The extra's
uvloop is used where present (proxy/loop.py)."""
INSTALL_EXTRA = "pip install 'telegraf-llm-input[proxy]'"


def missing_extra() -> str | None:
    """One line saying what to install when the `proxy` extra is not (None: it is); nothing is imported."""
    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"the proxy needs {' and '.join(missing)} (its extra): {INSTALL_EXTRA}"
