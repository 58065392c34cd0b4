"""`telegraf-llm-input proxy`: its options checked, and the proxy run until SIGTERM/SIGINT (options.py declares them).

It logs one line when it starts (where it listens, where it forwards, where its page is), one when the upstream
stops answering and one when it is back; never a request's path, body, answer or headers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal

from telegraf_llm_input.config.loader import check_duration, parse_duration
from telegraf_llm_input.config.outputs import parse_listen
from telegraf_llm_input.log import get_logger
from telegraf_llm_input.proxy.address import Address
from telegraf_llm_input.proxy.loop import name as loop_name, new_loop
from telegraf_llm_input.proxy.measure import Meters
from telegraf_llm_input.proxy.names import PAGE_PATH
from telegraf_llm_input.proxy.server import Proxy
from telegraf_llm_input.proxy.upstream import Upstream

log = get_logger("proxy")

__all__ = ["new_loop", "run", "settings"]


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
    gc.collect()  # what start-up left alive (modules, options) out of the collector's sight: a full collection
    gc.freeze()  # walking it all held a request for milliseconds now and then
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "proxy: listening on http://%s:%d, forwarding to %s; metrics at %s (%s)",
        shown,
        port,
        address,
        PAGE_PATH,
        loop_name(),
    )
    await stop.wait()
    server.close()
    await proxy.close()
    log.info("proxy: stopped")
    return 0
