"""The `top` loop: the agent's own sources and gather, every interval, drawn instead of written.

Same `build_sources`, `build_processors` and `Agent.gather_once` as the agent, so the screen shows the
numbers a database would get. Differences, on purpose: no outputs (a running agent already writes them;
`top` beside it must not write twice or take its Prometheus port) and no state_dir (it must not move the
agent's request-log positions).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import Config
from telegraf_llm_input.log import logger as agent_logger
from telegraf_llm_input.processors import build_processors
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import ReportsDown, ReportsTraffic, Source, SourceEnv
from telegraf_llm_input.sources.target import ServerSource
from telegraf_llm_input.top.terminal import HeldLogs, PlainScreen, TtyScreen, open_screen
from telegraf_llm_input.top.view import TopModel


def down_reasons(sources: Sequence[Source]) -> dict[str, str]:
    """Why each down target is down, from every source that can tell."""
    out: dict[str, str] = {}
    for source in sources:
        if isinstance(source, ReportsDown):
            out.update(source.down_reasons())
    return out


def traffic_gaps(sources: Sequence[Source], config: Config) -> dict[str, str]:
    """Why a target's requests are not counted (its log is where Ollama's and llama.cpp's requests are seen)."""
    out = {
        t.display_name: "`log: none` in the config"
        for t in config.targets or ()
        if (t.log or "").strip().lower() == "none"
    }
    for source in sources:
        if isinstance(source, ReportsTraffic):
            out.update(source.traffic_gaps())
    return out


def server_sources(sources: Sequence[Source]) -> list[ServerSource]:
    """The sources of configured targets (discovered ones live inside the discovery source)."""
    return [s for s in sources if isinstance(s, ServerSource)]


def build_agent(config: Config) -> Agent:
    env = SourceEnv(process_refresh_s=0.0)
    return Agent(
        build_sources(config, env),
        [],
        deadline_s=config.agent.deadline,
        global_tags=config.global_tags(),
        processors=build_processors(config),
    )


async def top(
    config: Config, *, count: int | None = None, stream: TextIO | None = None, keys: TextIO | None = None
) -> int:
    """Gather and draw until q, Ctrl-C, SIGTERM or `count` frames; 0 on a clean stop."""
    stream = stream if stream is not None else sys.stdout
    interval = config.agent.interval
    agent = build_agent(config)
    configured = server_sources(agent.sources)
    scrapers = {s.target.display_name: s.name for s in configured}
    model = TopModel(
        interval,
        expected={s.target.display_name: None if s.target.type == "auto" else s.target.type for s in configured},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    screen = open_screen(stream, keys)
    held = _hold_logs() if screen.interactive else None
    handled: list[signal.Signals] = []
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        if isinstance(screen, TtyScreen):
            loop.add_signal_handler(signal.SIGWINCH, screen.show)
            handled.append(signal.SIGWINCH)
            if screen.keys_fd is not None:
                tty = screen

                def on_keys() -> None:
                    if tty.read_keys():
                        stop.set()

                loop.add_reader(screen.keys_fd, on_keys)
        frames = 0
        while not stop.is_set():
            started = time.monotonic()
            metrics = await _until_stopped(agent.gather_once(), stop)
            if metrics is None:
                break
            problems = agent.problems()
            silent = {target: problems[source] for target, source in scrapers.items() if source in problems}
            shown = [text for name, text in problems.items() if name not in scrapers.values()]
            snapshot = model.update(
                metrics, down_reasons(agent.sources), shown, silent, traffic_gaps=traffic_gaps(agent.sources, config)
            )
            if not _show(screen, snapshot):
                break
            frames += 1
            if count is not None and frames >= count:
                break
            await _until_stopped(asyncio.sleep(max(0.0, interval - (time.monotonic() - started))), stop)
    finally:
        if isinstance(screen, TtyScreen) and screen.keys_fd is not None:
            loop.remove_reader(screen.keys_fd)
        for sig in handled:
            loop.remove_signal_handler(sig)
        screen.close()
        if held is not None:
            _release_logs(*held)
        await agent.close()
    return 0


async def _until_stopped(coro, stop: asyncio.Event):
    """`coro`'s result, or None when `stop` is set first (then `coro` is cancelled)."""
    work = asyncio.ensure_future(coro)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if work.done():
        return work.result()
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    return None


def _show(screen: PlainScreen | TtyScreen, snapshot) -> bool:
    """Draw; False when the reader went away (`top | head`)."""
    try:
        screen.show(snapshot)
    except BrokenPipeError:
        _silence_stdout()
        return False
    return True


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _hold_logs() -> tuple[HeldLogs, Mapping[logging.Logger, list[logging.Handler]]]:
    """While the screen is up, log records wait in memory instead of tearing it; see `_release_logs`."""
    held = HeldLogs()
    saved = {}
    for lg in (agent_logger, logging.getLogger()):
        saved[lg] = lg.handlers[:]
        lg.handlers[:] = [held]
    return held, saved


def _release_logs(held: HeldLogs, saved: Mapping[logging.Logger, list[logging.Handler]]) -> None:
    for lg, handlers in saved.items():
        lg.handlers[:] = handlers
    if held.dropped:
        agent_logger.info("top: %d earlier log lines were not kept", held.dropped)
    for record in held.records:
        target = agent_logger if record.name.startswith(agent_logger.name) else logging.getLogger()
        for handler in target.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
