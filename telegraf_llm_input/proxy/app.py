"""`telegraf-llm-input proxy`: the command's options, and running the proxy until SIGTERM/SIGINT.

It logs one line when it starts (where it listens, where it forwards, where its page is) and one per fault
class it sees (upstream down, back), never a request's path arguments, body, answer or headers.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from telegraf_llm_input.config.loader import check_duration, parse_duration
from telegraf_llm_input.config.outputs import parse_listen
from telegraf_llm_input.log import get_logger
from telegraf_llm_input.proxy.measure import Meters
from telegraf_llm_input.proxy.names import PAGE_PATH
from telegraf_llm_input.proxy.server import Proxy
from telegraf_llm_input.proxy.upstream import Address, Upstream
from telegraf_llm_input.servertypes import DEFAULT_PORTS

log = get_logger("proxy")
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORTS['proxy']}"


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


def settings(args: argparse.Namespace) -> tuple[Address, tuple[str, int], float, float]:
    """The options checked; ValueError with one line naming the bad one."""
    try:
        address = Address.parse(args.upstream)
    except ValueError as exc:
        raise ValueError(f"--upstream: {exc}") from None
    try:
        listen = parse_listen(args.listen)
    except ValueError as exc:
        raise ValueError(f"--listen: {exc}") from None
    durations = []
    for flag, text in (("--timeout", args.timeout), ("--connect-timeout", args.connect_timeout)):
        try:
            durations.append(check_duration(parse_duration(text), text))
        except ValueError as exc:
            raise ValueError(f"{flag}: {exc}") from None
    return address, listen, durations[0], durations[1]


async def run(args: argparse.Namespace) -> int:
    address, (host, port), timeout_s, connect_s = settings(args)
    proxy = Proxy(Upstream(address, connect_timeout_s=connect_s), Meters(), timeout_s=timeout_s)
    try:
        server = await proxy.start(host, port)
    except OSError as exc:
        log.error("proxy: cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shown = f"[{host}]" if ":" in host else host
    log.info("proxy: listening on http://%s:%d, forwarding to %s; metrics at %s", shown, port, address, PAGE_PATH)
    await stop.wait()
    server.close()
    await proxy.close()
    log.info("proxy: stopped")
    return 0
