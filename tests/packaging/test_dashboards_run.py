"""The dashboards run: every panel query of both dashboards returns data for what the panel claims.

Two agents (`host` = host-a, host-b), each the real CLI on two fake GPUs, watch a real llama-server and fake
servers of every type (vLLM, SGLang, TGI, Ollama, LM Studio, OpenAI-compatible, MLX, JSON, Prometheus page, a
second llama.cpp with the same target name on the other host, our proxy in front of the Ollama with traffic), probe three of them, tail a request log, write
to a real InfluxDB 1.x and serve /metrics to a real Prometheus (scrape every second, the alert rules loaded). Queries are substituted as Grafana
does (tests/support/grafana.py). Then one host's llama.cpp stops: that host reads down, the other stays up.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.fakes.llm import (
    Snap,
    fake_llamacpp,
    fake_openai,
    fake_vllm,
    llamacpp_metrics,
    llamacpp_props,
    llamacpp_slots,
    vllm_page,
)
from tests.fakes.llm_more import fake_sglang, fake_tgi, sglang_page, tgi_page
from tests.fakes.server import FakeServer, Reply
from tests.fakes.serverlogs import OllamaLog
from tests.fakes.streaming import Script, StreamingServer
from tests.support.grafana import interpolate
from tests.support.llama_server import BuildUnavailable, LlamaServer, ensure_llama_server, tiny_model_path
from tests.support.procs import ManagedProcess, RealPrometheus, find_binary, free_port
from tests.support.proxy import ProcessProxy

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "packaging" / "grafana"
HOSTS = ("host-a", "host-b")
DB = "dashboards"
INTERVAL, RATE_INTERVAL = "2s", "4s"  # Grafana: $__rate_interval = max($__interval + scrape, 4 x scrape)
BOUNDS = [0.05, 0.2, 1.0, 5.0]
LMSTUDIO_MODELS = json.loads((ROOT / "tests" / "fixtures" / "lmstudio" / "api-v0-models.json").read_text())


def _generator():
    spec = importlib.util.spec_from_file_location("grafana_generate_run", GRAFANA / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _hist(n: float) -> tuple[list[float], list[float], float]:
    """n requests so far, spread over the buckets (cumulative counts grow with n)."""
    return BOUNDS, [0.1 * n, 0.5 * n, 0.8 * n, 0.95 * n, n], 0.6 * n


def _tokens(n: float) -> tuple[list[float], list[float], float]:
    """n requests so far of 10 to 1000 tokens."""
    return [10.0, 100.0, 1000.0], [0.1 * n, 0.6 * n, n, n], 150.0 * n


class Clock:
    """Counters of the fake servers grow with wall time, as under steady load."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def t(self) -> float:
        return time.monotonic() - self.start + 1.0

    def vllm(self) -> str:
        t = self.t()
        return vllm_page(
            {
                "qwen-7b": Snap(
                    running=3,
                    waiting=2,
                    kv=0.42,
                    prompt=int(400 * t),
                    generation=int(120 * t),
                    preemptions=int(0.5 * t),
                    finished={"stop": int(4 * t), "length": int(t), "abort": int(0.3 * t), "error": int(0.2 * t)},
                    hists={
                        **{k: _hist(5 * t) for k in ("ttft", "itl", "tpot", "e2e", "queue", "prefill", "decode")},
                        **{k: _tokens(5 * t) for k in ("request_prompt_tokens", "request_generation_tokens")},
                    },
                    prefix_queries=int(400 * t),
                    prefix_hits=int(150 * t),
                )
            }
        )

    def sglang(self) -> str:
        t = self.t()
        return sglang_page(
            "qwen-7b", 1, 2, [0.31], int(300 * t), int(90 * t), int(3 * t), _hist(3 * t), cached=int(100 * t)
        )

    def tgi(self) -> str:
        t = int(self.t() * 10)
        return tgi_page(t, {"validation": t // 10 + 1}, 1, 2, 50.0 * t, 20.0 * t, _hist(t))

    def llamacpp(self) -> str:
        """Seconds counters sometimes whole, sometimes not: one line-protocol type per field all the same."""
        t = self.t()
        return llamacpp_metrics(int(30 * t), 60 * t, round(0.2 * t, 1), 2.0 * t, processing=1, decode_calls=int(60 * t))


def _slots_with_context() -> list[dict]:
    slots = llamacpp_slots(1, 2)
    slots[0]["n_past"] = 1536  # of n_ctx 4096
    return slots


def _write_log(path: Path, stop: threading.Event) -> None:
    """A service's request log: two prompt versions, some errors."""
    i = 0
    while not stop.is_set():
        with path.open("a") as f:
            for version in ("v1", "v2"):
                i += 1
                status = "error" if version == "v2" and i % 3 == 0 else "success"
                f.write(
                    json.dumps(
                        {
                            "duration_ms": 100 + i % 50,
                            "status": status,
                            "prompt_version": version,
                            "completion_tokens": 40,
                            "prompt_tokens": 200,
                        }
                    )
                    + "\n"
                )
        stop.wait(0.2)


def _proxy_traffic(url: str, stop: threading.Event) -> None:
    """A client of the proxy: streamed chats; every fourth one the server fails (500: an error), every sixth one
    it refuses as a bad request (400: the caller's mistake)."""
    body = {"model": "qwen3:1.7b", "messages": [{"role": "user", "content": "hi"}]}
    i = 0
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            i += 1
            try:
                status = 500 if i % 4 == 0 else 400 if i % 6 == 0 else 200
                path = "/api/chat" if status == 200 else f"/api/chat?status={status}"
                client.post(url + path, json=body)
            except httpx.HTTPError:
                pass
            stop.wait(0.2)


def _user_traffic(llama: LlamaServer, ollama_log: OllamaLog, stop: threading.Event) -> None:
    """Users of the two servers whose numbers come from their logs: completions on the real llama-server (its
    print_timing lines), and what the Ollama server logs for its users' chats, embeddings, errors and loads."""
    i = 0
    while not stop.is_set():
        i += 1
        try:
            llama.complete(f"user request {i}", 4)
        except httpx.HTTPError:
            pass
        ollama_log.access(200 if i % 5 else 500, 180_000_000 + i % 7 * 10_000_000, "/api/chat")
        ollama_log.access(200, 4_000_000, "/api/embed")
        if i % 4 == 0:
            ollama_log.load(1.75)
        stop.wait(0.3)


def _agent_config(
    tmp: Path, host: str, targets: list[dict], influx_url: str, prom_port: int, logs: list[dict] = ()
) -> Path:
    config = {
        "agent": {"interval": "1s", "hostname": host, "state_dir": str(tmp / f"state-{host}")},
        "host": {"enabled": True},
        "gpu": {"enabled": True},
        "targets": targets,
        "outputs": [
            {"type": "influxdb_v1", "url": influx_url, "database": DB, "flush_interval": "500ms"},
            {"type": "prometheus", "listen": f"127.0.0.1:{prom_port}", "path": "/metrics"},
        ],
    }
    if logs:
        config["logs"] = list(logs)
    path = tmp / f"agent-{host}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class World:
    def __init__(self, influx, prom_url: str, start_ms: int, gen, llama_b, agents: dict[str, ManagedProcess]):
        self.influx, self.prom_url, self.start_ms, self.spec, self.gen = influx, prom_url, start_ms, gen, gen
        self.llama_b, self.agents = llama_b, agents
        self._ready = False

    def ready(self) -> None:
        """Waits until every panel of both dashboards has its data (rates need a few gathers)."""
        if not self._ready:
            for flavour in ("influxdb", "prometheus"):
                _eventually(lambda: self.problems(flavour, ALL), f"{flavour} panels without data")  # noqa: B023 (polled here)
            self._ready = True

    def alerts(self) -> list[dict]:
        """Prometheus' pending and firing alerts, evaluated every second on the live data."""
        return httpx.get(f"{self.prom_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]

    # ------------------------------------------------------------ running queries as Grafana would
    def influx_series(self, query: str, variables: dict) -> list[dict]:
        now_ms = int(time.time() * 1000)
        q = interpolate(
            query, variables, interval=INTERVAL, time_filter=f"time >= {self.start_ms}ms and time <= {now_ms}ms"
        )
        result = self.influx.query(q, db=DB)["results"][0]
        assert "error" not in result, f"{q}: {result['error']}"
        return [
            {"tags": s.get("tags") or {}, "values": [row[1] for row in s["values"]]} for s in result.get("series", [])
        ]

    def prom_series(self, expr: str, variables: dict) -> list[dict]:
        q = interpolate(expr, variables, interval=INTERVAL, rate_interval=RATE_INTERVAL)
        now = time.time()
        r = httpx.get(
            f"{self.prom_url}/api/v1/query_range",
            params={"query": q, "start": self.start_ms / 1000, "end": now, "step": 1},
            timeout=10,
        )
        body = r.json()
        assert body.get("status") == "success", f"{q}: {body}"
        return [{"tags": s["metric"], "values": [float(v) for _, v in s["values"]]} for s in body["data"]["result"]]

    def series(self, flavour: str, target: dict, variables: dict) -> list[dict]:
        if flavour == "influxdb":
            return self.influx_series(target["query"], variables)
        return self.prom_series(target["expr"], variables)

    def panels(self, flavour: str):
        """(spec panel, its JSON) in dashboard order."""
        board = json.loads((GRAFANA / f"dashboard-{flavour}.json").read_text())
        specs = [p for row in self.spec.ROWS for p in row.panels]
        panels = self.gen.all_panels(board)
        assert [p.title for p in specs] == [p["title"] for p in panels]
        return list(zip(specs, panels))

    def problems(self, flavour: str, variables: dict) -> list[str]:
        """What a user would find empty: a panel missing a claimed server type or a host."""
        out = []
        hosts = set(variables["host"] or HOSTS)
        types = set(variables["server_type"] or ())
        panels = self.panels(flavour)
        with ThreadPoolExecutor(4) as pool:  # the databases answer in parallel
            results = list(pool.map(lambda sp: [self.series(flavour, t, variables) for t in sp[1]["targets"]], panels))
        for (spec, panel), per_query in zip(panels, results):
            seen_targets, seen_hosts = set(), set()
            for series in per_query:
                for s in series:
                    if any(v is not None for v in s["values"]):
                        seen_targets.add(s["tags"].get("target"))
                        seen_hosts.add(s["tags"].get("host"))
                        assert s["tags"].get("host") in hosts, f"{panel['title']}: host filter ignored"
                        if types and "target" in s["tags"]:  # targets are named by their server type
                            assert s["tags"]["target"] in types, f"{panel['title']}: server_type filter ignored"
            per_host = all(q.total_by is not None for q in spec.queries) or not spec.servers
            if per_host:
                want = {"host-a"} & hosts if spec.queries[0].measurement == "llm_requests" else hosts
                if not want <= seen_hosts:
                    out.append(f"{flavour} {panel['title']!r}: no data for host {sorted(want - seen_hosts)}")
            else:
                claimed = set(spec.servers)
                if not claimed <= seen_targets:
                    out.append(f"{flavour} {panel['title']!r}: no data for {sorted(claimed - seen_targets)}")
        return out

    def latest_up(self, flavour: str) -> dict[tuple[str, str], float]:
        """The Up panel's last value per (host, target)."""
        ((spec, panel),) = [(s, p) for s, p in self.panels(flavour) if p["title"] == "Up"]
        out = {}
        for s in self.series(
            flavour, panel["targets"][0], {"host": None, "server_type": None, "target": None, "model": None}
        ):
            values = [v for v in s["values"] if v is not None]
            if values:
                out[(s["tags"]["host"], s["tags"]["target"])] = values[-1]
        return out


ALL = {"host": None, "server_type": None, "target": None, "model": None, "ab_tag": "prompt_version"}


@pytest.fixture(scope="module")
def world(influxdb, tmp_path_factory):
    prometheus = find_binary("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not installed: apt-get install prometheus (scripts/test.sh does)")
    try:
        binary = ensure_llama_server()
    except BuildUnavailable as exc:
        pytest.skip(f"REAL LLAMA-SERVER TESTS SKIPPED: {exc}")
    tmp = tmp_path_factory.mktemp("dashboards")
    influxdb.create_db(DB)
    clock = Clock()
    llama_a = LlamaServer(binary, tiny_model_path(), tmp / "llama").start()
    fakes = {
        "vllm": fake_vllm(""),
        "sglang": fake_sglang([""]),
        "tgi": fake_tgi([""]),
        "openai": fake_openai(["lmstudio-community/qwen"]),
        "mlx": fake_openai(["mlx-community/qwen"]),
        "lmstudio": FakeServer({"/api/v0/models": Reply(LMSTUDIO_MODELS)}),
        "json": FakeServer(
            {
                "/metrics": Reply(
                    lambda: json.dumps({"inflight": 2, "out": int(clock.t() * 7)}), content_type="application/json"
                )
            }
        ),
        "prometheus": FakeServer(
            {
                "/metrics": Reply(
                    lambda: (
                        f"# TYPE app_queue_depth gauge\napp_queue_depth 3\n"
                        f"# TYPE app_tokens_total counter\n"
                        f"app_tokens_total {int(clock.t() * 5)}\n"
                    )
                )
            }
        ),
        "llamacpp-b": fake_llamacpp(""),
    }
    fakes["vllm"].script("/metrics", Reply(clock.vllm))
    fakes["sglang"].script("/metrics", Reply(clock.sglang))
    fakes["tgi"].script("/metrics", Reply(clock.tgi))
    # Connection: close, so that stopping it refuses the agent at once (no kept-alive connection lingers).
    b = fakes["llamacpp-b"]
    for path, body in (
        ("/health", {"status": "ok"}),
        ("/slots", _slots_with_context()),
        ("/props", llamacpp_props(2)),
        ("/v1/models", {"object": "list", "data": [{"id": "qwen", "object": "model"}]}),
    ):
        b.script(path, Reply(body, headers={"Connection": "close"}))
    b.script("/metrics", Reply(clock.llamacpp, headers={"Connection": "close"}))
    ollama = StreamingServer(
        Script(
            ttft_s=0.05,
            interval_s=0.01,
            load_ms=250.0,
            ollama_version="0.6.5",
            models=("qwen3:1.7b",),
            loaded_models=("qwen3:1.7b",),
            size_vram=750,
        )
    )
    for server in fakes.values():
        server.start()
    ollama.start()
    # the measuring proxy (the real command) in front of that Ollama, with a client's steady traffic through it
    proxy = ProcessProxy(ollama.url, tmp).start()
    stop_traffic = threading.Event()
    traffic = threading.Thread(target=_proxy_traffic, args=(proxy.url, stop_traffic), daemon=True)
    traffic.start()
    log_path, stop_log = tmp / "requests.log", threading.Event()
    log_path.write_text("")
    writer = threading.Thread(target=_write_log, args=(log_path, stop_log), daemon=True)
    writer.start()
    ollama_log = OllamaLog(tmp / "ollama-server.log")
    ollama_log.path.write_text("")
    users = threading.Thread(target=_user_traffic, args=(llama_a, ollama_log, stop_log), daemon=True)
    users.start()
    probe = {"enabled": True, "every": "2s", "max_tokens": 8, "timeout": "20s"}
    ports = {h: free_port() for h in HOSTS}
    configs = {
        "host-a": _agent_config(
            tmp,
            "host-a",
            [
                {
                    "url": llama_a.url,
                    "type": "llamacpp",
                    "name": "llamacpp",
                    "probe": {**probe, "api": "llamacpp"},
                    "log": str(llama_a.workdir / f"llama-server-{llama_a.port}.log"),
                },
                {"url": fakes["vllm"].url, "type": "vllm", "name": "vllm", "gpus": [0]},
                {"url": fakes["sglang"].url, "type": "sglang", "name": "sglang"},
                {"url": fakes["lmstudio"].url, "type": "lmstudio", "name": "lmstudio"},
                {
                    "url": fakes["json"].url,
                    "type": "json",
                    "name": "json",
                    "json_fields": {
                        "requests_running": {"path": "inflight"},
                        "generation_tokens_total": {"path": "out", "kind": "counter", "type": "int"},
                    },
                },
                {"url": fakes["prometheus"].url, "type": "prometheus", "name": "prometheus"},
            ],
            influxdb.url,
            ports["host-a"],
            logs=[{"path": str(log_path), "name": "api", "from": "beginning", "group_by": ["prompt_version"]}],
        ),
        "host-b": _agent_config(
            tmp,
            "host-b",
            [
                {"url": fakes["llamacpp-b"].url, "type": "llamacpp", "name": "llamacpp"},
                {
                    "url": ollama.url,
                    "type": "ollama",
                    "name": "ollama",
                    "probe": {**probe, "api": "ollama"},
                    "log": str(ollama_log.path),
                },
                {"url": fakes["tgi"].url, "type": "tgi", "name": "tgi", "probe": probe},
                {"url": fakes["openai"].url, "type": "openai", "name": "openai"},
                {"url": fakes["mlx"].url, "type": "mlx", "name": "mlx"},
                {"url": proxy.url, "type": "auto", "name": "proxy"},
            ],
            influxdb.url,
            ports["host-b"],
        ),
    }
    prom = RealPrometheus(
        prometheus,
        tmp,
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ROOT / "packaging" / "prometheus" / "alerts.yml")],
                "scrape_configs": [
                    {
                        "job_name": "telegraf-llm-input",
                        "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports.values()]}],
                    }
                ],
            }
        ),
    )
    start_ms = int(time.time() * 1000)
    agents = [
        ManagedProcess(
            [sys.executable, "-m", "tests.support.fake_gpu_agent", "--config", str(configs[h]), "--signal", "none"],
            tmp / f"agent-{h}.log",
            cwd=ROOT,
        )
        for h in HOSTS
    ]
    for agent, host in zip(agents, HOSTS):
        agent.argv_config = configs[host]
    try:
        prom.wait_ready()
        gen = _generator()  # its ROWS are the description (packaging/grafana/dashboard_spec.py)
        yield World(influxdb, prom.url, start_ms, gen, fakes["llamacpp-b"], dict(zip(HOSTS, agents)))
    finally:
        for agent in agents:
            agent.stop()
        prom.stop()
        stop_log.set()
        for server in fakes.values():
            try:
                server.stop()
            except Exception:
                pass
        stop_traffic.set()
        proxy.stop()
        ollama.stop()
        llama_a.stop()


def _eventually(check, what: str, timeout: float = 90.0) -> None:
    """Polls until `check()` returns no problems; then fails with the last list."""
    deadline = time.monotonic() + timeout
    problems = check()
    while problems and time.monotonic() < deadline:
        time.sleep(2.0)
        problems = check()
    assert not problems, f"{what}:\n" + "\n".join(problems)


@pytest.mark.parametrize("flavour", ["influxdb", "prometheus"])
def test_every_panel_returns_data_for_what_it_claims(world, flavour):
    _eventually(lambda: world.problems(flavour, ALL), f"{flavour} panels without data")
    world.ready()


def test_host_and_server_type_variables_filter_every_panel(world):
    world.ready()
    only = {**ALL, "host": ["host-b"], "server_type": ["llamacpp", "ollama"]}
    for flavour in ("influxdb", "prometheus"):
        # problems() asserts that no series of another host or server type comes back
        missing = world.problems(flavour, only)
        # ...and what was selected still shows: Up lacks only the other types
        others = sorted(set(sys.modules["dashboard_spec"].ALL_SERVERS) - {"llamacpp", "ollama"})
        assert f"{flavour} 'Up': no data for {others}" in missing, missing
        assert not [p for p in missing if "'Targets up per host'" in p or "'GPU utilisation'" in p], missing


def test_variable_queries_list_both_hosts(world):
    world.ready()
    board = json.loads((GRAFANA / "dashboard-influxdb.json").read_text())
    (host_var,) = [v for v in board["templating"]["list"] if v["name"] == "host"]
    result = world.influx.query(host_var["query"], db=DB)["results"][0]
    assert {row[1] for row in result["series"][0]["values"]} >= set(HOSTS)
    prom = json.loads((GRAFANA / "dashboard-prometheus.json").read_text())
    (host_var,) = [v for v in prom["templating"]["list"] if v["name"] == "host"]
    metric = host_var["query"].removeprefix("label_values(").split(",")[0]
    r = httpx.get(f"{world.prom_url}/api/v1/label/host/values", params={"match[]": metric}, timeout=10).json()
    assert set(r["data"]) >= set(HOSTS)


def test_grafana_alert_queries_run_against_influxdb(world):
    world.ready()
    rules = yaml.safe_load((GRAFANA / "alerts" / "telegraf-llm-input.yaml").read_text())["groups"][0]["rules"]
    for rule in rules:
        for data in rule["data"]:
            if data["datasourceUid"] == "__expr__":
                continue
            seconds = data["relativeTimeRange"]["from"]
            query = data["model"]["query"].replace("$timeFilter", f"time > now() - {seconds}s")
            result = world.influx.query(query, db=DB)["results"][0]
            assert "error" not in result, (rule["uid"], query, result)
            if rule["uid"] == "llm-agent-silent":  # both agents alive: their moving count is well above 0
                last = {s["tags"]["host"]: s["values"][-1][1] for s in result["series"]}
                assert set(last) >= set(HOSTS) and all(v >= 1 for v in last.values()), last


def test_the_database_took_every_batch(world):
    """Whole and fractional counter values, every server type in one measurement: no field-type conflict."""
    world.ready()
    for host, agent in world.agents.items():
        errors = [line for line in agent.log_path.read_text().splitlines() if line.startswith("E!")]
        assert not errors, (host, errors[:3])


def test_one_host_down_the_other_up_then_a_dead_agent_is_noticed(world):
    world.ready()
    assert world.latest_up("prometheus").get(("host-b", "llamacpp")) == 1
    assert not [a for a in world.alerts() if a["labels"]["alertname"] in ("LlmAgentSilent", "LlmTargetDown")]
    world.llama_b.stop()  # host-b's llama.cpp goes away; host-a's has the same target name

    def check(flavour):
        up = world.latest_up(flavour)
        problems = []
        if up.get(("host-b", "llamacpp")) != 0:
            problems.append(f"{flavour}: host-b llamacpp reads {up.get(('host-b', 'llamacpp'))}, want 0")
        if up.get(("host-a", "llamacpp")) != 1:
            problems.append(f"{flavour}: host-a llamacpp reads {up.get(('host-a', 'llamacpp'))}, want 1")
        return problems

    _eventually(lambda: check("influxdb") + check("prometheus"), "Up after host-b's server stopped", 30)

    def alerted(name: str, want: set, keys=("host", "target")) -> list[str]:
        got = {tuple(a["labels"].get(k) for k in keys) for a in world.alerts() if a["labels"]["alertname"] == name}
        return (
            [] if got == want else [f"{name} pending/firing for {sorted(got, key=str)}, want {sorted(want, key=str)}"]
        )

    _eventually(lambda: alerted("LlmTargetDown", {("host-b", "llamacpp")}), "LlmTargetDown on live data", 20)

    agent_b = world.agents["host-b"]
    instance = next(t for t in yaml.safe_load(agent_b.argv_config.read_text())["outputs"] if t["type"] == "prometheus")[
        "listen"
    ]
    agent_b.stop()  # the agent itself dies: its scrape fails, its series go stale
    _eventually(
        lambda: alerted("LlmAgentSilent", {(None, instance)}, ("host", "instance")), "LlmAgentSilent on live data", 20
    )
    _eventually(lambda: alerted("LlmTargetDown", set()), "host-b's stale target-down resolved", 20)
    rules = httpx.get(f"{world.prom_url}/api/v1/rules", timeout=10).json()["data"]["groups"][0]["rules"]
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
