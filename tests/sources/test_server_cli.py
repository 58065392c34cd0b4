"""End to end: the CLI's one gather against fake servers prints llm_server line protocol."""

import subprocess
import sys

from line_protocol_parser import parse_line

from tests.fakes.llm import Snap, fake_llamacpp, fake_vllm, llamacpp_metrics, vllm_page


def test_once_prints_llm_server_lines(tmp_path):
    page = vllm_page({"Qwen/Qwen2.5-7B-Instruct": Snap(running=2, prompt=100, generation=300, finished={"stop": 4})})
    with fake_vllm(page) as vllm, fake_llamacpp(llamacpp_metrics(10, 20, 1, 2), api_key="k") as llama:
        (tmp_path / "key").write_text("k\n")
        config = tmp_path / "c.yaml"
        config.write_text(f"""
host: {{enabled: false}}
targets:
  - {{url: "{vllm.url}", name: v}}
  - {{url: "{llama.url}", name: l, bearer_token_file: "{tmp_path / "key"}"}}
""")
        proc = subprocess.run(
            [sys.executable, "-m", "telegraf_llm_input", "--config", str(config), "--once"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    points = [parse_line(line + "\n") for line in proc.stdout.splitlines() if line.startswith("llm_server")]
    by_target = {p["tags"]["target"]: p for p in points}
    assert by_target["v"]["tags"]["server_type"] == "vllm" and by_target["v"]["fields"]["requests_running"] == 2
    assert by_target["v"]["fields"]["generation_tokens_total"] == 300
    assert by_target["l"]["tags"]["server_type"] == "llamacpp" and by_target["l"]["fields"]["up"] == 1
    assert "k\n" not in proc.stderr
