"""The server-log source: Ollama's and llama.cpp's lines -> `llm_server` points, exact against what was written."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import statistics

import pytest

from telegraf_llm_input.config.targets import TargetConfig
from telegraf_llm_input.log import TelegrafFormatter
from telegraf_llm_input.sources import logfind
from telegraf_llm_input.sources.base import GatherContext, ProbeLedger, ProbeSent
from telegraf_llm_input.sources.serverlog import DiscoveredServerLogs, ServerLogSource, state_paths
from tests.fakes.serverlogs import DOCKER_PART, OllamaLog, docker_json_records, gin_line, print_timing_lines
from tests.support.journal import JournalFile

S = 1_000_000_000
T0 = 1_900_000_000 * S


def pct(values, p):
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def gather(source: ServerLogSource, time_ns: int):
    return asyncio.run(source.gather(GatherContext(time_ns, 5.0)))


def by_api(points):
    return {p.tags.get("api"): p for p in points}


def ollama_target(path, **kw) -> TargetConfig:
    return TargetConfig(url="http://127.0.0.1:11434", type="ollama", log=str(path), **kw)


def test_ollama_exact_against_the_fakes_record(tmp_path):
    log = OllamaLog(tmp_path / "server.log")
    log.access(200, 5_000_000, "/api/chat")  # before the agent started: not counted
    source = ServerLogSource(ollama_target(log.path), tmp_path / "state")
    assert gather(source, T0) == []  # the first gather starts the first interval
    log.record.clear()
    statuses = [200] * 17 + [500, 503, 404]
    for i, status in enumerate(statuses):
        log.access(status, (i + 1) * 7_654_321, "/api/chat" if i % 2 else "/api/generate")
    log.access(200, 1_234_567, "/api/embed")
    log.access(200, 900_000, "/api/ps", "GET")  # the agent's scrape
    log.access(200, 800_000, "/api/version", "GET")
    log.load(2.51)
    log.load(3.25)
    points = by_api(gather(source, T0 + 10 * S))
    gen, emb, loads = points["generate"].fields, points["embed"].fields, points[None].fields
    chat = [r for r in log.record if r.path in ("/api/chat", "/api/generate")]
    assert round(gen["requests_per_s"] * 10) == len(chat) == 20
    ms = [r.latency_ns / 1e6 for r in chat]
    assert gen["e2e_p95_ms"] == pytest.approx(pct(ms, 95), rel=1e-9)
    assert gen["e2e_p50_ms"] == pytest.approx(pct(ms, 50), rel=1e-9)
    assert gen["e2e_mean_ms"] == pytest.approx(statistics.fmean(ms), rel=1e-9)
    assert gen["error_ratio"] == sum(r.status >= 500 for r in chat) / len(chat)
    assert gen["client_error_ratio"] == sum(400 <= r.status < 500 for r in chat) / len(chat)
    assert emb["requests_per_s"] == 0.1 and emb["e2e_p95_ms"] == pytest.approx(1.234567)
    assert loads == {"model_loads_per_s": 0.2, "model_load_seconds": 3.25}
    assert points["generate"].tags == {"target": "http://127.0.0.1:11434", "server_type": "ollama", "api": "generate"}
    quiet = by_api(gather(source, T0 + 20 * S))
    assert quiet["generate"].fields == {"requests_per_s": 0.0}
    assert quiet["embed"].fields == {"requests_per_s": 0.0}
    assert quiet[None].fields == {"model_loads_per_s": 0.0}


def test_a_restart_neither_loses_nor_double_counts(tmp_path):
    log = OllamaLog(tmp_path / "server.log")
    state = tmp_path / "state"
    target = ollama_target(log.path)
    counted = 0.0
    t = T0
    source = ServerLogSource(target, state)
    gather(source, t)
    for round_ in range(3):
        for _ in range(5 + round_):
            log.access(200, 3_000_000, "/api/chat")
        t += 10 * S
        counted += by_api(gather(source, t))["generate"].fields["requests_per_s"] * 10
        log.access(200, 3_000_000, "/api/chat")  # read by the next agent
        asyncio.run(source.close())
        for _ in range(4):
            log.access(200, 3_000_000, "/api/chat")  # written while the agent is down
        t += 30 * S
        source = ServerLogSource(target, state)
        counted += by_api(gather(source, t))["generate"].fields["requests_per_s"] * 30
    assert round(counted) == len(log.record)


def test_llamacpp_from_a_real_journal_file(tmp_path):
    journal = JournalFile(tmp_path / "system.journal", unit="llama-server.service")
    journal.write("main: server is listening on http://127.0.0.1:8080")
    target = TargetConfig(url="http://127.0.0.1:8080", type="llamacpp")
    where = logfind.LogLocation("journal", unit="llama-server.service")
    state = tmp_path / "state"

    def make():
        return ServerLogSource(
            target, state, locate=lambda t: logfind.Found(where, "llamacpp"), journal_files=[str(journal.path)]
        )

    source = make()
    assert gather(source, T0) == []
    blocks = [(i % 4, 100 + i, 1.5 * i + 1, 10 + i, 20.0 * i + 5, 1 + i % 7) for i in range(30)]
    for slot, task, p_ms, p_n, e_ms, e_n in blocks[:20]:
        journal.write(*print_timing_lines(slot, task, p_ms, p_n, e_ms, e_n))
    [first] = gather(source, T0 + 5 * S)
    asyncio.run(source.close())
    for slot, task, p_ms, p_n, e_ms, e_n in blocks[20:]:
        journal.write(*print_timing_lines(slot, task, p_ms, p_n, e_ms, e_n))
    source = make()
    [second] = gather(source, T0 + 7 * S)
    assert first.tags == {"target": "http://127.0.0.1:8080", "server_type": "llamacpp"}
    f = first.fields
    assert round(f["requests_per_s"] * 5) == 20 and round(second.fields["requests_per_s"] * 2) == 10
    gen = round(f["request_generation_tokens_mean"] * 20 + second.fields["request_generation_tokens_mean"] * 10)
    assert gen == sum(b[5] for b in blocks)
    # percentiles from the same lines, as printed (two decimals)
    prefill = [float(f"{b[2]:.2f}") for b in blocks[:20]]
    tpot = [float(f"{b[4]:.2f}") / b[5] for b in blocks[:20]]
    for p in (50, 90, 95, 99):
        assert f[f"prefill_p{p}_ms"] == pytest.approx(pct(prefill, p), rel=1e-9)
        assert f[f"tpot_p{p}_ms"] == pytest.approx(pct(tpot, p), rel=1e-9)
    assert "error_ratio" not in f


def test_two_targets_keep_their_own_state(tmp_path):
    where = logfind.LogLocation("file", path=str(tmp_path / "x.log"))
    a = state_paths(tmp_path, TargetConfig(url="http://127.0.0.1:11434"), where)
    b = state_paths(tmp_path, TargetConfig(url="http://127.0.0.1:8080"), where)
    assert a is not None and b is not None and len({*a, *b}) == 4


def test_docker_json_file_log(tmp_path):
    path = tmp_path / "abc-json.log"
    path.write_text("")
    source = ServerLogSource(TargetConfig(url="http://127.0.0.1:8080", type="llamacpp", log=str(path)), None)
    gather(source, T0)
    with open(path, "a") as f:
        for line in print_timing_lines(0, 1, 2.0, 3, 4.0, 5) + print_timing_lines(1, 2, 2.0, 3, 4.0, 5):
            f.write(json.dumps({"log": line, "stream": "stderr", "time": "2026-08-13T10:15:40.1Z"}) + "\n")
    [point] = gather(source, T0 + S)
    assert point.fields["requests_per_s"] == 2.0 and point.fields["request_generation_tokens_p50"] == 5


def test_docker_json_file_log_joins_a_line_docker_cut_at_16_kib(tmp_path):
    """An Ollama access line with a long query is written in three records; read alone, none is a request."""
    path = tmp_path / "abc-json.log"
    path.write_text("")
    source = ServerLogSource(TargetConfig(url="http://127.0.0.1:11434", type="ollama", log=str(path)), None)
    gather(source, T0)
    long = gin_line(200, 42_000_000, "/api/chat?session=" + "x" * (2 * DOCKER_PART + 100))
    records = docker_json_records(long)
    assert records.count("\n") == 3 and records.count('\\n"') == 1  # as Docker writes it: only the last ends the line
    with open(path, "a") as f:
        f.write(records + docker_json_records(gin_line(200, 8_000_000, "/api/generate")))
    gen = by_api(gather(source, T0 + S))["generate"].fields
    assert gen["requests_per_s"] == 2.0 and gen["e2e_p95_ms"] == pytest.approx(pct([42.0, 8.0], 95), rel=1e-9)


def _docker_ollama(tmp_path):
    """An empty json-file log and an Ollama target reading it (positions in `tmp_path/state`), first gather done."""
    path = tmp_path / "abc-json.log"
    path.write_text("")
    target = TargetConfig(url="http://127.0.0.1:11434", type="ollama", log=str(path))
    source = ServerLogSource(target, tmp_path / "state")
    gather(source, T0)
    return path, target, source


def _append(path, *texts: str) -> None:
    with open(path, "a") as f:
        f.write("".join(texts))


def _short(ms: int) -> str:
    return docker_json_records(gin_line(200, ms * 1_000_000, "/api/generate"))


def _a_new_agent_counts_it_once(target, state, t: int) -> None:
    """A new agent counts the cut line (42 ms) and the short one after it (9 ms); the next one neither again."""
    source = ServerLogSource(target, state)
    gen = by_api(gather(source, t))["generate"].fields
    assert gen["requests_per_s"] == 2.0 and gen["e2e_p95_ms"] == pytest.approx(pct([42.0, 9.0], 95), rel=1e-9)
    asyncio.run(source.close())
    source = ServerLogSource(target, state)
    assert by_api(gather(source, t + S))["generate"].fields == {"requests_per_s": 0.0}
    asyncio.run(source.close())


def test_a_docker_line_cut_by_an_agent_restart_is_read_whole_once(tmp_path):
    """The agent read the first parts of a line Docker cut, then restarted before its last part: the next run reads
    the whole line (its saved position is before the first part), counting it once and nothing before it twice."""
    path, target, source = _docker_ollama(tmp_path)
    *first, last = _cut_line(42)
    _append(path, _short(8), *first)
    assert by_api(gather(source, T0 + S))["generate"].fields["requests_per_s"] == 1.0  # the short one
    asyncio.run(source.close())
    _append(path, last, _short(9))
    _a_new_agent_counts_it_once(target, tmp_path / "state", T0 + 2 * S)


def test_a_llamacpp_block_cut_by_an_agent_restart_keeps_its_prefill(tmp_path):
    """The agent read a block's `prompt eval` line, then restarted before its `total time`: the new agent still
    reports the request with its prefill (the parser's waiting lines are kept beside the log position)."""
    path = tmp_path / "llama-server.log"
    path.write_text("")
    target = TargetConfig(url="http://127.0.0.1:8080", type="llamacpp", log=str(path))
    state = tmp_path / "state"
    source = ServerLogSource(target, state)
    gather(source, T0)
    prompt_eval, *rest = print_timing_lines(1, 517, 4.75, 192, 69.82, 85)
    with open(path, "a") as f:
        f.write(prompt_eval)
    assert gather(source, T0 + S)[0].fields == {"requests_per_s": 0.0}
    asyncio.run(source.close())
    with open(path, "a") as f:
        f.write("".join(rest))
    source = ServerLogSource(target, state)
    [point] = gather(source, T0 + 2 * S)
    assert point.fields["requests_per_s"] == 1.0
    assert point.fields["prefill_p50_ms"] == 4.75 and point.fields["request_prompt_tokens_p50"] == 192
    assert point.fields["tpot_p50_ms"] == pytest.approx(69.82 / 85)


def test_the_probes_requests_do_not_count(tmp_path):
    log = OllamaLog(tmp_path / "server.log")
    ledger = ProbeLedger()
    target = ollama_target(log.path)
    source = ServerLogSource(target, None, ledger)
    gather(source, T0)
    import time

    now = time.time()
    ledger._sent.append(ProbeSent(target.display_name, "/api/chat", now - 1.0, now - 0.5))
    log.access(200, 480_000_000, "/api/chat", when=now - 0.5)  # the probe's
    log.access(200, 20_000_000, "/api/chat", when=now - 0.5)  # a user's
    [gen, _] = gather(source, T0 + S)
    assert gen.fields["requests_per_s"] == 1.0 and gen.fields["e2e_p50_ms"] == 20.0


def test_log_none_and_other_types_build_nothing(tmp_path):
    from telegraf_llm_input.sources.serverlog import wanted

    assert not wanted(TargetConfig(url="http://127.0.0.1:8000", type="vllm"))
    assert not wanted(TargetConfig(url="http://127.0.0.1:11434", type="ollama", log="none"))
    assert wanted(TargetConfig(url="http://127.0.0.1:11434", type="auto"))


def test_discovered_servers_get_a_log_source(tmp_path):
    found: list[TargetConfig] = []
    finder = DiscoveredServerLogs(found, None, ProbeLedger())
    assert asyncio.run(finder.find(GatherContext(T0, 1.0))) == []
    found.append(TargetConfig(url="http://127.0.0.1:11434", type="ollama"))
    found.append(TargetConfig(url="http://127.0.0.1:8000", type="vllm"))
    [new] = asyncio.run(finder.find(GatherContext(T0, 1.0)))
    assert new.name == "serverlog:http://127.0.0.1:11434"
    assert asyncio.run(finder.find(GatherContext(T0, 1.0))) == []


def as_nobody(fn) -> str:
    """Runs fn() in a forked child that dropped root for `nobody` (root reads every file); its log lines."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec, the interpreter and modules are already loaded
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            stream = os.fdopen(write, "w")
            handler = logging.StreamHandler(stream)
            handler.setFormatter(TelegrafFormatter())
            logging.getLogger("telegraf_llm_input").addHandler(handler)
            logging.getLogger("telegraf_llm_input").setLevel(logging.INFO)
            fn()
            stream.flush()
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
@pytest.mark.parametrize("where", ["file", "directory"])
def test_an_unreadable_log_says_what_to_grant_once(tmp_path, where):
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    path = home / "logs" / "server.log"
    path.write_text("x\n")
    tmp_path.chmod(0o755)
    if where == "file":
        path.chmod(0o600)
    else:
        (home / "logs").chmod(0o700)

    def run():
        s = ServerLogSource(TargetConfig(url="http://127.0.0.1:11434", type="ollama", log=str(path)), None)
        for i in range(3):
            s._located_at = float("-inf")  # looked at again each gather
            assert asyncio.run(s.gather(GatherContext(T0 + i * S, 1.0))) == []

    lines = [line for line in as_nobody(run).splitlines() if "serverlog" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("I! ") and "nobody" in lines[0] and "setfacl" in lines[0]
    assert (str(path) if where == "file" else str(home / "logs")) in lines[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_an_unreadable_journal_says_what_to_grant_once(tmp_path):
    journal = JournalFile(tmp_path / "system.journal")
    journal.write("x")
    journal.path.chmod(0o600)
    tmp_path.chmod(0o755)
    where = logfind.LogLocation("journal", unit="ollama.service")

    def run():
        s = ServerLogSource(
            TargetConfig(url="http://127.0.0.1:11434", type="ollama"),
            None,
            locate=lambda t: logfind.Found(where, "ollama"),
            journal_files=[str(journal.path)],
        )
        for i in range(3):
            assert asyncio.run(s.gather(GatherContext(T0 + i * S, 1.0))) == []

    lines = [line for line in as_nobody(run).splitlines() if "serverlog" in line and "reading" not in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("I! ") and "systemd-journal" in lines[0] and "usermod -aG" in lines[0]


@pytest.mark.parametrize("kind", ["ollama", "llamacpp"])
def test_type_auto_with_a_log_key_reads_it_when_the_process_does_not_say_the_type(tmp_path, kind):
    """`type: auto` (the default) + `log:`, where the port's process is docker-proxy, hidden or renamed: the log's own
    lines say whose it is (it was never read, silently)."""
    path = tmp_path / "server.log"
    path.write_text("")
    target = TargetConfig(url="http://127.0.0.1:9", log=str(path))  # nothing listens: no process name to go by
    source = ServerLogSource(target, tmp_path / "state")
    assert gather(source, T0) == []
    with open(path, "a") as f:
        f.write("some start-up line\n")
    if kind == "ollama":
        log = OllamaLog(path)
        log.access(200, 7_000_000, "/api/chat")
        log.access(200, 9_000_000, "/api/chat")
    else:
        with open(path, "a") as f:
            f.writelines(print_timing_lines(0, 1, 2.0, 3, 4.0, 5) + print_timing_lines(1, 2, 2.0, 3, 4.0, 5))
    points = gather(source, T0 + S)
    assert points and all(p.tags["server_type"] == kind for p in points)
    requests = [p for p in points if "requests_per_s" in p.fields]
    assert sum(p.fields["requests_per_s"] for p in requests) == 2.0


def test_a_log_that_went_away_is_looked_for_again(tmp_path, monkeypatch):
    """A Docker container recreated (`docker compose up -d`: a new id, a new json-file log) or a server restarted
    with another --log-file: the old file is gone; the new one is found (it was never looked for again)."""
    from telegraf_llm_input.sources import serverlog

    monkeypatch.setattr(serverlog, "LOCATE_EVERY_S", 0.0)
    old, new = tmp_path / "old-json.log", tmp_path / "new-json.log"
    old.write_text("")
    where = {"path": old}
    target = TargetConfig(url="http://127.0.0.1:11434", type="ollama")
    source = ServerLogSource(
        target,
        tmp_path / "state",
        locate=lambda t: logfind.Found(logfind.LogLocation("file", path=str(where["path"])), "ollama"),
    )
    gather(source, T0)
    OllamaLog(old).access(200, 5_000_000, "/api/chat")
    assert by_api(gather(source, T0 + S))["generate"].fields["requests_per_s"] == 1.0
    old.unlink()  # the container is gone; its successor logs elsewhere
    new.write_text("")
    where["path"] = new
    gather(source, T0 + 2 * S)
    OllamaLog(new).access(200, 5_000_000, "/api/chat")
    OllamaLog(new).access(200, 6_000_000, "/api/chat")
    points = by_api(gather(source, T0 + 3 * S))
    assert points and points["generate"].fields["requests_per_s"] == 2.0


def test_a_log_file_that_does_not_exist_says_so_once(tmp_path, caplog):
    """`log:` with a typo, or a log under /home hidden by the unit's ProtectHome: no points, and (until now) no word."""
    caplog.set_level(logging.INFO, logger="telegraf_llm_input")
    path = tmp_path / "olama.log"
    source = ServerLogSource(TargetConfig(url="http://127.0.0.1:11434", type="ollama", log=str(path)), None)
    for i in range(3):
        assert gather(source, T0 + i * S) == []
    said = [r.getMessage() for r in caplog.records if "serverlog" in r.getMessage() and str(path) in r.getMessage()]
    missing = [m for m in said if "does not exist" in m]
    assert len(missing) == 1 and caplog.records[-1].levelname in ("INFO", "WARNING"), said
    path.write_text("")
    gather(source, T0 + 3 * S)
    assert any("appeared" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def _cut_line(ms: int) -> list[str]:
    """Docker's records for an Ollama access line long enough to be cut in three parts."""
    return docker_json_records(
        gin_line(200, ms * 1_000_000, "/api/chat?session=" + "x" * (2 * DOCKER_PART + 100))
    ).splitlines(keepends=True)


def test_a_first_start_inside_a_line_docker_cut_reads_it_whole(tmp_path):
    """No saved position, the agent starts at the log's end while Docker is writing a cut line (its first parts
    are there, not its last): the line is read whole once its last part comes, never its tail alone."""
    path = tmp_path / "abc-json.log"
    *first, last = _cut_line(42)
    path.write_text(_short(5) + "".join(first))
    source = ServerLogSource(TargetConfig(url="http://127.0.0.1:11434", type="ollama", log=str(path)), None)
    gather(source, T0)
    _append(path, last, _short(8))
    gen = by_api(gather(source, T0 + S))["generate"].fields
    assert gen["requests_per_s"] == 2.0 and gen["e2e_p95_ms"] == pytest.approx(pct([42.0, 8.0], 95), rel=1e-9)


@pytest.mark.parametrize("new_file_holds", [0, 1])
def test_a_line_docker_cut_across_a_rotation_survives_an_agent_restart(tmp_path, new_file_holds):
    """Docker rotates (max-size, max-file > 1: the file renamed to .1, a new one) while a cut line is being
    written; the agent reads the rotation, restarts before the last part: the line is still read whole, once."""
    path, target, source = _docker_ollama(tmp_path)
    parts = _cut_line(42)
    _append(path, _short(8), parts[0])
    assert by_api(gather(source, T0 + S))["generate"].fields["requests_per_s"] == 1.0
    path.rename(f"{path}.1")
    path.write_text("".join(parts[1 : 1 + new_file_holds]))
    assert by_api(gather(source, T0 + 2 * S))["generate"].fields == {"requests_per_s": 0.0}
    asyncio.run(source.close())
    _append(path, *parts[1 + new_file_holds :], _short(9))
    _a_new_agent_counts_it_once(target, tmp_path / "state", T0 + 3 * S)


@pytest.mark.parametrize("how", ["compressed", "truncated", "truncated while read"])
def test_a_cut_line_whose_first_parts_are_gone_after_a_restart_is_skipped_and_said(tmp_path, how, caplog):
    """The rotated file with the first parts was compressed away (`compress: true`), or Docker truncated the log in
    place (max-file 1), before the agent came back: the rest of that line is no line; it is skipped, said once."""
    path, target, source = _docker_ollama(tmp_path)
    # the tail alone would look like a request: the line is junk, then an access line
    junk = docker_json_records("x" * 2 * DOCKER_PART + gin_line(200, 77_000_000, "/api/chat")).splitlines(True)
    _append(path, _short(8), junk[0])
    assert by_api(gather(source, T0 + S))["generate"].fields["requests_per_s"] == 1.0
    if how == "compressed":
        with open(path, "rb") as f, gzip.open(f"{path}.1.gz", "wb") as g:
            g.write(f.read())
        path.unlink()  # Docker's rotation with `compress`: gzipped to .1.gz, the text gone
    else:
        os.truncate(path, 0)
    _append(path, junk[1])
    t = T0 + S
    if how == "truncated while read":
        t += S
        assert by_api(gather(source, t))["generate"].fields == {"requests_per_s": 0.0}
    asyncio.run(source.close())
    _append(path, junk[2], _short(9))
    source = ServerLogSource(target, tmp_path / "state")
    with caplog.at_level(logging.INFO):
        gen = by_api(gather(source, t + S))["generate"].fields
    assert gen["requests_per_s"] == 1.0 and gen["e2e_p95_ms"] == 9.0
    said = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(said) == 1 and str(path) in said[0]
    asyncio.run(source.close())
