"""Deployment files cannot run here (no Docker engine, no cluster); check what can be checked."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from telegraf_llm_input.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "packaging" / "kubernetes"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _embedded_config(docs: list[dict], tmp_path: Path) -> dict:
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    text = cm["data"]["config.yaml"]
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    return yaml.safe_load(text.replace("/etc/telegraf-llm-input/secret/token", str(token)))


def test_kubernetes_manifests_are_valid_and_locked_down(tmp_path):
    for name, kind in (("sidecar.yaml", "Deployment"), ("daemonset.yaml", "DaemonSet")):
        docs = _docs(name)
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), name
        (workload,) = [d for d in docs if d["kind"] == kind]
        spec = workload["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        agents = [c for c in spec["template"]["spec"]["containers"] if c["name"] == "llm-agent"]
        assert agents, name
        sc = agents[0]["securityContext"]
        assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["readOnlyRootFilesystem"]
        assert agents[0]["resources"]["limits"]["memory"]
        mounts = {m["name"] for m in agents[0]["volumeMounts"]}
        volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
        assert mounts <= volumes


def test_embedded_agent_configs_pass_our_own_validation(tmp_path):
    sidecar = parse_config(_embedded_config(_docs("sidecar.yaml"), tmp_path))
    assert sidecar.targets[0].url == "http://127.0.0.1:8000"
    assert sidecar.outputs[0].type == "prometheus"
    gpu = parse_config(_embedded_config(_docs("daemonset.yaml"), tmp_path))
    assert gpu.outputs[0].token == "t0ken"  # from token_file, never inline


def test_dockerfile_is_slim_and_non_root():
    text = (ROOT / "packaging" / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0"))
    copied = re.findall(r"^COPY (.+) \S+$", text, re.M)
    for line in copied:
        for path in line.split():
            assert (ROOT / path).exists(), path
