"""Command line: run (Telegraf execd or standalone), --once, check-config, sample-config, top, install-service,
doctor, proxy."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telegraf_llm_input import __version__
from telegraf_llm_input.agent import Agent
from telegraf_llm_input.config import Config, load_config, parse_config, sample_config
from telegraf_llm_input.config.loader import ConfigError, check_duration, parse_duration
from telegraf_llm_input.config.yamlfile import release as release_yaml
from telegraf_llm_input.lazy import lazy_import
from telegraf_llm_input.log import get_logger, setup_logging
from telegraf_llm_input.processors import build_processors
from telegraf_llm_input.proxy import options as proxy_options
from telegraf_llm_input.sinks import build_sinks
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import SourceEnv
from telegraf_llm_input.trigger import Trigger, start_stdin_reader, stdin_is_stream

if TYPE_CHECKING:
    from telegraf_llm_input import doctor, install
    from telegraf_llm_input.proxy import app as proxy_app
else:  # loaded for their commands only (plistlib, the probes of every output, the proxy): a run never pays for them
    doctor = lazy_import("telegraf_llm_input.doctor")
    install = lazy_import("telegraf_llm_input.install")
    proxy_app = lazy_import("telegraf_llm_input.proxy.app")

log = get_logger("cli")
EXIT_CONFIG = 2
STOP_GRACE_S = 0.3


def _columns() -> int:
    """The terminal's width as `shutil.get_terminal_size` finds it ($COLUMNS, then stdout's terminal, else 80)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout, with the width found here: argparse imports `shutil` for it (and with it zlib, bz2,
    lzma and their libraries: ~0.45 MiB of RSS a run would keep for a help text it never prints)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns() - 2)


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser (its subcommands' too) formatting with `_HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    common = _ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="YAML config file, - for stdin (default: built-in defaults)",
    )
    parser = _ArgumentParser(
        prog="telegraf-llm-input",
        parents=[common],
        description="Watch a local LLM model server and its GPU; emit InfluxDB line protocol.",
    )
    parser.add_argument("--version", action="version", version=f"telegraf-llm-input {__version__}")
    parser.add_argument(
        "--signal",
        choices=["stdin", "none"],
        default="none",
        help='stdin: gather on each newline (Telegraf execd signal = "STDIN"); '
        "none: gather every --interval on our own (default)",
    )
    parser.add_argument("--interval", metavar="DURATION", help="gather period for --signal none (e.g. 10s)")
    parser.add_argument("--once", action="store_true", help="gather once, print, exit (like telegraf --test)")
    parser.add_argument("--log-level", choices=["debug", "info", "warn", "error"], help="stderr log level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("check-config", parents=[common], help="validate the config and exit (0 ok, 2 bad)")
    sub.add_parser("sample-config", help="print a complete, commented sample config")
    proxy_options.add_arguments(
        sub.add_parser("proxy", help="a measuring pass-through proxy in front of a model server")
    )
    top = sub.add_parser("top", parents=[common], help="show the model servers and GPUs live in the terminal")
    top.add_argument("--interval", metavar="DURATION", default="2s", help="redraw period (default 2s)")
    top.add_argument("--count", metavar="N", type=_count, help="exit after N frames (default: on q or Ctrl-C)")
    _service_commands(sub, common)
    return parser


def _service_commands(sub, common: argparse.ArgumentParser) -> None:
    """`install-service` and `doctor`: setting the agent up as a service, and what it can see there."""
    install = sub.add_parser("install-service", help="write the config, Telegraf drop-in, systemd unit / launchd job")
    install.add_argument(
        "--prefix", metavar="DIR", type=Path, help="the install holding bin/telegraf-llm-input (default: this one)"
    )
    install.add_argument("--root", metavar="DIR", type=Path, default=Path("/"), help="stage the files under DIR")
    install.add_argument("--platform", choices=["linux", "macos"], default=default_platform())
    install.add_argument("--force", action="store_true", help="replace an existing config with the defaults")
    install.add_argument(
        "--proxy", action="store_true", help="also the measuring proxy's own systemd unit / launchd job (docs/proxy.md)"
    )
    install.add_argument(
        "--upstream",
        metavar="URL",
        help=f"with --proxy: the model server it forwards to (default: Ollama's {proxy_options.DEFAULT_UPSTREAM})",
    )
    install.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"with --proxy: where clients connect (default {proxy_options.DEFAULT_LISTEN})",
    )
    doctor_cmd = sub.add_parser(
        "doctor", parents=[common], help="say what this user can see and reach, and how to fix what not (exit 1)"
    )
    doctor_cmd.add_argument(
        "--telegraf",
        metavar="PATH",
        action="append",
        help="Telegraf config file or drop-in directory to look in (repeatable; default: the usual places)",
    )


def default_platform() -> str:
    return "macos" if sys.platform == "darwin" else "linux"


def install_service(args) -> int:
    layout = install.default_layout(args.platform, args.prefix)
    proxy = None
    if args.proxy:
        try:
            proxy = install.proxy_setup(
                args.upstream or proxy_options.DEFAULT_UPSTREAM, args.listen or proxy_options.DEFAULT_LISTEN
            )
        except ValueError as exc:
            log.error("install-service: %s", exc)
            return EXIT_CONFIG
    elif args.upstream or args.listen:
        log.error("install-service: --upstream and --listen go with --proxy")
        return EXIT_CONFIG
    try:
        written = install.install(layout, args.root, force=args.force, proxy=proxy)
    except OSError as exc:
        hint = " (run it as root, or stage the files with --root DIR)" if isinstance(exc, PermissionError) else ""
        log.error("install-service: %s%s", exc, hint)
        return 1
    for w in written:
        print(f"{'kept' if w.kept else 'wrote'} {w.path}  ({w.what})")
    print("next:")
    for step in install.next_steps(layout, proxy):
        print(f"  {step}")
    return 0


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _load(args) -> Config:
    path = getattr(args, "config", None)
    config = load_config(path) if path else parse_config({})
    if args.__dict__.get("interval"):
        try:
            interval = check_duration(parse_duration(args.interval), args.interval)
        except ValueError as exc:
            raise ConfigError("--interval", str(exc)) from None
        config.agent.interval = interval
    return config


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level or "info")
    if args.command == "sample-config":
        sys.stdout.write(sample_config())
        return 0
    if args.command == "proxy":
        return _proxy(args)
    if args.command == "install-service":
        return install_service(args)
    try:
        config = _load(args)
    except ConfigError as exc:
        log.error("config error: %s", exc)
        return EXIT_CONFIG
    release_yaml()  # every command below has read all the YAML it reads
    if not args.log_level:
        setup_logging(config.agent.log_level)
    if args.command == "check-config":
        sources = build_sources(config, source_env(config))
        print(f"config OK: {len(sources)} source(s): {', '.join(s.name for s in sources) or 'none'}")
        return 0
    if args.command == "doctor":
        if not args.log_level:
            setup_logging("error")  # the report is the output; the sources' own lines would repeat it
        places = args.telegraf or doctor.outputs.TELEGRAF_PLACES
        return _run_loop(doctor.run(config, getattr(args, "config", None), places))
    try:
        if args.command == "top":
            from telegraf_llm_input.top.app import top  # the terminal UI loads for this command only

            code = _run_loop(top(config, count=args.count))
        else:
            code = _run_loop(run(config, signal_mode=args.signal, once=args.once))
    except ConfigError as exc:  # found while building the sources or outputs
        log.error("config error: %s: %s", getattr(args, "config", "<defaults>"), exc)
        code = EXIT_CONFIG
    except Exception as exc:  # a bug: one line for Telegraf's log, non-zero so execd restarts us
        log.error("fatal: %s: %s", type(exc).__name__, exc)
        code = 1
    _exit_now_if_threads_linger(code)
    return code


def _proxy(args) -> int:
    """The proxy is a service of its own, apart from the agent (proxy/app.py): it needs no agent config."""
    missing = proxy_options.missing_extra()
    if missing is not None:
        log.error("proxy: %s", missing)
        return EXIT_CONFIG
    try:
        proxy_app.settings(args)
    except ValueError as exc:
        log.error("proxy: %s", exc)
        return EXIT_CONFIG
    return _run_loop(proxy_app.run(args), proxy_app.new_loop)


def _run_loop(coro, new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop) -> int:
    """Like asyncio.run, but without waiting for worker threads: one stuck in a syscall (a hung NFS
    stat in psutil) must not keep us alive after stdin EOF or SIGTERM."""
    loop = new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(_cancel_pending())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()  # shuts the default executor down without waiting


def source_env(config: Config) -> SourceEnv:
    """What sources share, the same for `check-config` and a run (so both say the same about it)."""
    return SourceEnv(state_dir=Path(config.agent.state_dir) if config.agent.state_dir else None)


async def run(config: Config, *, signal_mode: str, once: bool) -> int:
    env = source_env(config)
    sources = build_sources(config, env)
    agent = Agent(
        sources,
        build_sinks(config),
        deadline_s=config.agent.deadline,
        global_tags=config.global_tags(),
        processors=build_processors(config),
    )
    if once:
        try:
            await agent.gather_once()
        finally:
            await agent.close()
        return 0

    loop = asyncio.get_running_loop()
    trigger = Trigger(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, trigger.stop)
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        loop.add_signal_handler(sig, trigger.ring)
    if signal_mode == "stdin":
        start_stdin_reader(trigger, gather_on_newline=True)
    elif stdin_is_stream():
        start_stdin_reader(trigger, gather_on_newline=False)  # still drain it and notice EOF
    log.info(
        "started: %d source(s) [%s], signal=%s%s",
        len(sources),
        ", ".join(s.name for s in sources),
        signal_mode,
        "" if signal_mode == "stdin" else f", interval={config.agent.interval:g}s",
    )
    try:
        await serve(agent, trigger, interval=None if signal_mode == "stdin" else config.agent.interval)
    finally:
        await agent.close()
    log.info("stopped")
    return 0


async def serve(agent: Agent, trigger: Trigger, *, interval: float | None) -> None:
    """Gather on each ring (or each clock tick when `interval` is set) until the trigger stops.

    The clock starts each gather in its own callback (`Trigger.every`): one with nothing to wait for is done
    there; one that waits is handed over and finished here. Rings during a gather coalesce into one more
    gather. On stop, an in-flight gather gets STOP_GRACE_S to finish (and write) before it is cancelled.
    """
    if interval is not None:
        trigger.every(interval, agent.gather_nowait)
    while await trigger.wait():
        try:
            await trigger.graced(trigger.handed() or agent.gather_once(), STOP_GRACE_S)
        except Exception as exc:
            log.error("gather failed: %s", exc)
        if trigger.stopping:
            return


async def _cancel_pending() -> None:
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _exit_now_if_threads_linger(code: int) -> None:
    """A source thread stuck in a syscall (a hung NFS stat) must not keep us alive after stop.

    Worker threads are not daemons: the interpreter would join them at exit, forever.
    """
    lingering = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if lingering:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
