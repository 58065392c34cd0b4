"""The process source with the real psutil against real child processes that listen on real sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from telegraf_llm_input.config import parse_config
from telegraf_llm_input.config.loader import ConfigError
from telegraf_llm_input.schema import lookup
from telegraf_llm_input.sources import build_sources
from telegraf_llm_input.sources.base import GatherContext, SourceEnv
from telegraf_llm_input.sources.linux_sockets import listen_inodes
from telegraf_llm_input.sources.process import ProcessSource, PsutilPortLookup, cpu_percent, is_local_host
from tests.fakes.nvml import FakeNvml, install_missing_library
from tests.sources.test_gpu import records  # noqa: F401  (fixture)
from tests.support.procs import ManagedProcess, free_port, wait_until

# A stand-in model server: listens on HOST:PORT, starts one worker child (like vLLM's engine
# process), burns a little CPU, writes its pid file, and waits.
SERVER = r"""
import os, socket, subprocess, sys, time
host, port, pid_file, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(8)
open(pid_file + ".worker", "w").write(str(worker.pid))
open(pid_file, "w").write(str(os.getpid()))
end = time.monotonic() + 0.2
while time.monotonic() < end:
    pass
time.sleep(600)
"""


class Server:
    def __init__(self, tmp: Path, host: str, port: int, marker: str = "llm-fake-server", script: str = SERVER):
        self.pid_file = tmp / f"server-{port}.pid"
        self.pid_file.unlink(missing_ok=True)
        self.proc = ManagedProcess(
            [sys.executable, "-c", script, host, str(port), str(self.pid_file), marker], tmp / f"server-{port}.log"
        )
        probe = "127.0.0.1" if host in ("0.0.0.0", "127.0.0.1") else host
        wait_until(lambda: self.pid_file.exists() and _connects(probe, port), 15, "test server", self.proc.proc)
        self.pid = int(self.pid_file.read_text())
        self.worker_pid = int(Path(str(self.pid_file) + ".worker").read_text())

    def kill(self) -> None:
        self.proc.kill()


def _connects(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True


@pytest.fixture
def servers(tmp_path):
    started: list[Server] = []

    def start(host: str, port: int, **kw) -> Server:
        server = Server(tmp_path, host, port, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        server.proc.stop()


def process_sources(targets: list[dict], gpu: dict | None = None) -> list[ProcessSource]:
    config = parse_config({"targets": targets, "gpu": gpu or {}, "host": {"enabled": False}})
    return [s for s in build_sources(config, SourceEnv()) if isinstance(s, ProcessSource)]


def gather(source):
    [metric] = asyncio.run(source.gather(GatherContext(time_ns=time.time_ns(), deadline_s=10.0)))
    assert metric.measurement == "llm_process"
    return metric


def test_found_by_port_on_loopback_with_gpu_memory_of_its_children(servers, monkeypatch):
    port = free_port()
    server = servers("127.0.0.1", port)
    fake = FakeNvml().install(monkeypatch)
    fake.gpus[0].processes = [(server.pid, 1024 * 1024 * 512)]
    fake.gpus[1].processes = [(server.worker_pid, 1024 * 1024 * 70_000), (999_999_999, 1024 * 1024 * 9_000)]
    fake.gpus[2].processes = [(999_999_999, 1024 * 1024 * 5_000)]  # someone else's VRAM
    [source] = process_sources([{"url": f"http://127.0.0.1:{port}", "type": "vllm", "name": "vllm-a"}])

    m = gather(source)
    assert m.tags == {"target": "vllm-a", "server_type": "vllm", "process_name": psutil.Process(server.pid).name()}
    f = m.fields
    assert f["up"] == 1 and f["pid"] == server.pid
    assert f["listen_address"] == f"127.0.0.1:{port}" and f["exposed"] == 0
    assert f["gpu_memory_used_mib"] == pytest.approx(70_512)
    assert f["gpu_indices"] == "0,1"
    assert f["rss_bytes"] > 1_000_000 and f["num_threads"] >= 1 and f["num_fds"] >= 3
    assert 0 <= f["uptime_s"] < 600
    assert f["restarts_total"] == 0
    assert "cpu_percent" not in f  # no interval to measure over yet
    m2 = gather(source)
    assert m2.fields["cpu_percent"] >= 0
    for name in f:
        assert lookup("llm_process", name) is not None, f"llm_process.{name} is not documented"


def test_all_interfaces_is_exposed(servers, monkeypatch):
    install_missing_library(monkeypatch)  # and no GPU: no GPU fields, still a process
    port = free_port()
    server = servers("0.0.0.0", port)
    [source] = process_sources([{"url": f"http://localhost:{port}", "type": "ollama"}])
    f = gather(source).fields
    assert f["pid"] == server.pid and f["exposed"] == 1 and f["listen_address"] == f"0.0.0.0:{port}"
    assert "gpu_memory_used_mib" not in f and "gpu_indices" not in f


def test_restart_down_and_recovery(servers, tmp_path, monkeypatch, records):  # noqa: F811
    install_missing_library(monkeypatch)
    port = free_port()
    first = servers("127.0.0.1", port)
    [source] = process_sources([{"url": f"http://127.0.0.1:{port}", "type": "llamacpp", "name": "llama"}])
    assert gather(source).fields["pid"] == first.pid

    first.kill()
    for _ in range(3):
        down = gather(source)
        assert down.fields == {"up": 0, "restarts_total": 0}
        assert down.tags["target"] == "llama" and down.tags["process_name"]  # last known name kept
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(first.pid) in warnings[0].getMessage()

    second = servers("127.0.0.1", port)
    back = gather(source)
    assert back.fields["up"] == 1 and back.fields["pid"] == second.pid
    assert back.fields["restarts_total"] == 1
    assert any(r.levelno == logging.INFO and "found again" in r.getMessage() for r in records)
    assert gather(source).fields["restarts_total"] == 1  # counted once


def test_found_by_pattern_and_by_pid_file(servers, monkeypatch):
    install_missing_library(monkeypatch)
    port = free_port()
    server = servers("127.0.0.1", port, marker="--served-model-name=vibethinker-test-7731")
    by_pattern, by_pid_file = process_sources(
        [
            {"url": "http://gpu-box.example:8000", "name": "p", "process": {"pattern": r"vibethinker-test-77\d1"}},
            {"url": "http://gpu-box.example:8001", "name": "f", "process": {"pid_file": str(server.pid_file)}},
        ]
    )
    assert gather(by_pattern).fields["pid"] == server.pid
    assert gather(by_pid_file).fields["pid"] == server.pid


def test_nothing_listening_is_down_with_one_warning(monkeypatch, records):  # noqa: F811
    install_missing_library(monkeypatch)
    [source] = process_sources([{"url": f"http://127.0.0.1:{free_port()}", "name": "none"}])
    for _ in range(2):
        m = gather(source)
        assert m.fields == {"up": 0, "restarts_total": 0}
        assert m.tags == {"target": "none", "server_type": "auto"}
    assert len([r for r in records if r.levelno == logging.WARNING]) == 1


def test_only_local_targets_by_default():
    sources = process_sources(
        [
            {"url": "https://10.1.2.3:8000", "name": "remote"},
            {"url": "http://127.0.0.1:8000", "name": "loop"},
            {"url": "http://localhost:11434", "name": "host"},
            {"url": "http://127.0.0.1:8001", "name": "off", "process": {"enabled": False}},
        ]
    )
    assert sorted(s.name for s in sources) == ["process:host", "process:loop"]
    assert process_sources([]) == [] and is_local_host("::1") and not is_local_host("example.org")


def test_bad_pattern_is_a_config_error():
    with pytest.raises(ConfigError, match="pattern"):
        parse_config({"targets": [{"url": "http://127.0.0.1:1", "process": {"pattern": "("}}]})


def test_cpu_percent_math():
    assert cpu_percent(None, (10.0, 5.0)) is None
    assert cpu_percent((10.0, 5.0), (12.0, 6.0)) == pytest.approx(50.0)
    assert cpu_percent((10.0, 5.0), (12.0, 9.0)) == pytest.approx(200.0)  # two cores busy
    assert cpu_percent((10.0, 5.0), (12.0, 4.0)) is None  # a child exited: its CPU time left the sum
    assert cpu_percent((10.0, 5.0), (10.0, 5.0)) is None


def test_found_by_port_when_the_system_socket_list_is_refused(servers, monkeypatch):
    install_missing_library(monkeypatch)
    port = free_port()
    server = servers("127.0.0.1", port)

    def refused(kind="inet"):
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "net_connections", refused)  # as on macOS, or without privileges
    [source] = process_sources([{"url": f"http://127.0.0.1:{port}"}])
    f = gather(source).fields
    assert f["pid"] == server.pid and f["exposed"] == 0


class CountingLookup(PsutilPortLookup):
    """The real lookup, counting the costly full searches."""

    def __init__(self):
        self.searches = 0

    def pids(self, port):
        self.searches += 1
        return super().pids(port)


def counted_source(target: dict) -> tuple[ProcessSource, CountingLookup]:
    config = parse_config({"targets": [target], "gpu": {"enabled": False}, "host": {"enabled": False}})
    lookup = CountingLookup()
    return ProcessSource(config.targets[0], None, ports=lookup), lookup


linux_only = pytest.mark.skipif(listen_inodes(1) is None, reason="no cheap socket check on this platform")


@linux_only
def test_a_down_target_costs_no_search_and_a_live_one_is_searched_once(servers):
    port = free_port()
    source, lookup = counted_source({"url": f"http://127.0.0.1:{port}", "name": "t"})
    for _ in range(3):
        assert gather(source).fields == {"up": 0, "restarts_total": 0}
    assert lookup.searches == 0  # nothing listens: the socket table said so, no process was asked

    server = servers("127.0.0.1", port)
    for _ in range(4):
        f = gather(source).fields
        assert f["up"] == 1 and f["pid"] == server.pid and f["listen_address"] == f"127.0.0.1:{port}"
    assert lookup.searches == 1

    server.kill()
    wait_until(lambda: not listen_inodes(port), 10, "socket closed")
    assert gather(source).fields["up"] == 0
    assert lookup.searches == 1


# Listens; when a file appears, does one thing (`close` its socket, or `spawn` its worker like vLLM's engine)
# and stays alive.
LATER = r"""
import os, socket, subprocess, sys, time
port, action, go, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_server(("127.0.0.1", port))
open(ready, "w").write(str(os.getpid()))
while not os.path.exists(go):
    time.sleep(0.02)
if action == "close":
    s.close()
else:
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(ready + ".worker", "w").write(str(worker.pid))
open(ready + ".done", "w").write("1")
time.sleep(600)
"""


def start_later(tmp_path, action: str) -> tuple[ManagedProcess, int, Path, Path]:
    port = free_port()
    go, ready = tmp_path / "go", tmp_path / "ready"
    proc = ManagedProcess([sys.executable, "-c", LATER, str(port), action, str(go), str(ready)], tmp_path / "log")
    wait_until(lambda: ready.exists() and _connects("127.0.0.1", port), 15, "listener", proc.proc)
    return proc, port, go, Path(str(ready) + ".done")


@linux_only
def test_a_live_process_that_stops_listening_is_searched_again(tmp_path):
    proc, port, go, done = start_later(tmp_path, "close")
    try:
        source, lookup = counted_source({"url": f"http://127.0.0.1:{port}", "name": "t"})
        assert gather(source).fields["pid"] == proc.pid
        go.touch()
        wait_until(done.exists, 15, "socket closed", proc.proc)
        assert psutil.pid_exists(proc.pid)
        assert gather(source).fields == {"up": 0, "restarts_total": 0}
    finally:
        proc.stop()


def test_a_worker_started_later_is_counted_once_it_holds_gpu_memory(tmp_path, monkeypatch):
    proc, port, go, done = start_later(tmp_path, "spawn")
    try:
        fake = FakeNvml().install(monkeypatch)
        fake.gpus[0].processes = [(proc.pid, 1024 * 1024 * 100)]
        [source] = process_sources([{"url": f"http://127.0.0.1:{port}", "type": "vllm"}])
        assert gather(source).fields["gpu_memory_used_mib"] == pytest.approx(100)
        go.touch()
        wait_until(done.exists, 15, "worker", proc.proc)
        worker = int(Path(str(done).removesuffix(".done") + ".worker").read_text())
        fake.gpus[1].processes = [(worker, 1024 * 1024 * 4_000)]  # the engine worker loads the model
        f = gather(source).fields
        assert f["gpu_memory_used_mib"] == pytest.approx(4_100) and f["gpu_indices"] == "0,1"
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.stop()


class NoCheapCheck(CountingLookup):
    """A platform whose lookup cannot tell cheaply what listens (sockets() is None)."""

    def sockets(self, port):
        return None


def test_without_a_cheap_check_a_live_pid_is_still_searched_once(servers):
    port = free_port()
    config = parse_config({"targets": [{"url": f"http://127.0.0.1:{port}"}], "gpu": {"enabled": False}})
    lookup = NoCheapCheck()
    source = ProcessSource(config.targets[0], None, ports=lookup)
    assert gather(source).fields["up"] == 0 and lookup.searches == 1  # nothing to go by: searched
    server = servers("127.0.0.1", port)
    for _ in range(3):
        assert gather(source).fields["pid"] == server.pid
    assert lookup.searches == 2
    server.kill()
    assert gather(source).fields["up"] == 0  # the pid's death is seen at once


# Its worker holds the model: 96 MiB written (resident), as Ollama's `ollama runner` or vLLM's EngineCore does.
SERVER_WITH_A_HEAVY_WORKER = SERVER.replace(
    '"import time; time.sleep(600)"', "\"import time; model = b'm' * (96 << 20); time.sleep(600)\""
)


def test_tree_rss_is_the_memory_of_the_process_and_its_children(servers):
    port = free_port()
    server = servers("127.0.0.1", port, script=SERVER_WITH_A_HEAVY_WORKER)
    worker = psutil.Process(server.worker_pid)
    wait_until(lambda: worker.memory_info().rss > 96 << 20, 15, "worker memory", None)
    [source] = process_sources([{"url": f"http://127.0.0.1:{port}", "type": "ollama", "name": "ollama"}])
    f = gather(source).fields
    main_rss = psutil.Process(server.pid).memory_info().rss
    assert f["rss_bytes"] == pytest.approx(main_rss, rel=0.05)  # the main process only, as before
    assert f["tree_processes"] == 2
    assert f["tree_rss_bytes"] == pytest.approx(main_rss + worker.memory_info().rss, rel=0.05)
    assert f["tree_rss_bytes"] > f["rss_bytes"] + (96 << 20)
