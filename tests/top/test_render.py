"""Snapshot -> lines: pure, so every frame property is checked without a terminal."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, strategies as st

from telegraf_llm_input.top.render import ASCII, UNICODE, ansi, buckets, fit, plain, render, sparkline
from telegraf_llm_input.top.view import (
    GpuView,
    HostView,
    LoadedModelView,
    ProbeView,
    ProcessView,
    Snapshot,
    TargetView,
)

T0 = 1_700_000_000_000_000_000


def target(name: str = "vllm-a", **changes) -> TargetView:
    base = TargetView(
        target=name,
        model="Qwen/Qwen2.5-1.5B-Instruct",
        server_type="vllm",
        host="box",
        up=True,
        busy=False,
        loading=False,
        down_reason=None,
        running=3,
        waiting=1,
        gen_tps=412.3,
        prompt_tps=1250.0,
        ttft_p50_ms=180.0,
        ttft_p95_ms=640.0,
        tpot_p50_ms=21.0,
        tpot_p95_ms=35.0,
        kv_ratio=0.42,
        slots_busy=None,
        slots_total=None,
        context_ratio=None,
        error_ratio=0.0,
        process=ProcessView(True, 96.0, 2.5 * 2**30),
        probe=ProbeView(True, None, 210.0, 900.0, 48.2, 4.0),
        gen_history=(None, 100.0, 300.0, 412.3),
        ttft_history=(None, 500.0, 700.0, 640.0),
    )
    return replace(base, **changes)


def snapshot(targets=None, gpus=None, problems=()) -> Snapshot:
    gpu = GpuView("0", "NVIDIA H100 80GB HBM3", False, 97.0, 74200.0, 81559.0, 512.3, 700.0, 58.0)
    return Snapshot(
        T0,
        "box",
        2.0,
        35.0,
        tuple(targets if targets is not None else [target()]),
        tuple(gpus if gpus is not None else [gpu]),
        HostView(12.0, 45.0, 0.0, 0.0),
        tuple(problems),
        8.0,
    )


def text(lines) -> list[str]:
    return [plain(line) for line in lines]


def test_sparkline_scales_from_zero_to_the_maximum_and_keeps_gaps():
    assert sparkline([0.0, 5.0, 10.0], 3) == "▁▅█"
    assert sparkline([None, 10.0, 10.0], 3) == " ██"
    assert sparkline([2.0], 4) == "   █"  # right-aligned: the newest value is always in the last column
    assert sparkline([0.0, 0.0], 2) == "▁▁"
    assert sparkline([0.0, 5.0, 10.0], 3, ASCII) == "_+@"


def test_buckets_fold_old_values_and_keep_the_newest_bucket_full():
    assert buckets([1, 2, 3, 4, 5, 6, 7], 3) == [1, 4, 7]  # [1] [2 3 4] [5 6 7] by max
    assert buckets([1.0, None, None, None], 2, reduce=sum) == [1.0, None]
    assert buckets([], 5) == []


def test_fit_cuts_with_an_ellipsis_and_keeps_styles():
    line = (("abcdef", "bold"), ("ghij", "bad"))
    assert fit(line, 20) == line
    assert fit(line, 8) == (("abcdef", "bold"), ("g", "bad"), ("…", "dim"))
    assert plain(fit(line, 8, ASCII)) == "abcdefg~"


def test_ansi_colours_only_styled_spans():
    assert ansi((("up", "ok"), (" plain", ""))) == "\x1b[32mup\x1b[0m plain"


def test_an_up_target_block():
    lines = text(render(snapshot()))
    assert lines[0].startswith("telegraf-llm-input top · box · every 2s")
    block = "\n".join(lines[1:6])
    assert lines[1].startswith("● vllm-a  vllm  Qwen/Qwen2.5-1.5B-Instruct") and lines[1].endswith("UP")
    assert "run 3 wait 1 · gen 412 tok/s · prompt 1250 tok/s · kv 42% · err 0%" in block
    assert "ttft p50 180 ms p95 640 ms · tpot p50 21 ms p95 35 ms" in block
    assert "process cpu 96% rss 2.5 GiB · probe 4s ago ttft 210 ms ttfa 900 ms 48.2 tok/s" in block
    assert "last 8s · gen tok/s" in block and "ttft p95" in block


def test_a_target_on_another_host_says_which():
    lines = text(render(snapshot([target(), target("remote", host="gpu-7")])))
    assert any(line.startswith("● vllm-a  vllm") for line in lines)  # the header's host: not repeated
    assert any(line.startswith("● remote@gpu-7  vllm") for line in lines)


def test_down_busy_and_loading_targets():
    down = target(
        "gone",
        up=False,
        down_reason="GET http://127.0.0.1:1/metrics: connection refused",
        process=ProcessView(False, None, None),
        probe=ProbeView(False, "connect", None, None, None, 1.0),
    )
    busy = target("llama", busy=True, server_type="llamacpp")
    loading = target("big", up=False, loading=True)
    lines = text(render(snapshot([down, busy, loading])))
    joined = "\n".join(lines)
    assert any(line.startswith("● gone") and line.endswith("DOWN") for line in lines)
    assert "  why: GET http://127.0.0.1:1/metrics: connection refused" in lines
    assert "process not found · probe 1s ago FAILED connect" in joined
    assert any(line.startswith("● llama") and line.endswith("BUSY") for line in lines)
    assert any(line.startswith("● big") and line.endswith("LOADING") for line in lines)
    assert "  loading the model" in lines


def test_a_skipped_probe_is_not_a_failure():
    idle = target(
        "ollama", server_type="ollama", probe=ProbeView(False, None, None, None, None, 2.0, "no_model_loaded")
    )
    joined = "\n".join(text(render(snapshot([idle]))))
    assert "probe 2s ago skipped: no_model_loaded" in joined and "FAILED" not in joined


def test_a_long_model_path_keeps_its_file_name():
    long = target(model="/root/.cache/telegraf-llm-input/models/tiny-llama-e128-l2-q8_0.gguf")
    title = text(render(snapshot([long]), 60))[1]
    assert title.endswith("UP") and len(title) == 60
    assert "…" in title and "tiny-llama-e128-l2-q8_0.gguf" in title


def test_gpu_line():
    [gpu_line] = [line for line in text(render(snapshot())) if line.startswith("  0 ")]
    assert "NVIDIA H100 80GB HBM3" in gpu_line
    assert "util  97% mem 72.5/79.6 GiB (91%) pwr 512/700 W 58°C" in gpu_line
    lost = GpuView("1", "NVIDIA H100", True, None, None, None, None, None, None)
    assert "  1 NVIDIA H100 LOST (needs a reset)" in text(render(snapshot(gpus=[lost])))


def test_problems_are_listed():
    lines = text(render(snapshot(problems=["source gpu: NVML: driver not loaded"])))
    assert "! source gpu: NVML: driver not loaded" in lines


def test_short_screen_drops_charts_then_details_never_the_state():
    many = [target(f"t{i}") for i in range(5)]
    full = text(render(snapshot(many)))
    short = text(render(snapshot(many), height=24))
    assert len(full) > 24 >= len(short)
    assert not any("gen tok/s" in line for line in short)  # charts went first
    assert sum(line.endswith("UP") for line in short) == 5  # every target still shows its state
    assert any("· gen 412 tok/s" in line for line in short)
    tiny = text(render(snapshot(many), height=5))
    assert len(tiny) == 5 and tiny[-1].startswith("…") and "more lines" in tiny[-1]


def test_no_target_says_so():
    assert any("no model server target" in line for line in text(render(snapshot(targets=[]))))


def test_ascii_glyphs_are_ascii():
    down = target("gone", up=False, down_reason="refused")
    lines = text(render(snapshot([target(), down]), glyphs=ASCII))
    assert all(line.isascii() for line in lines)


@given(
    width=st.integers(20, 200),
    height=st.one_of(st.none(), st.integers(2, 40)),
    name=st.text(min_size=1, max_size=60).filter(lambda s: s.isprintable()),
    glyphs=st.sampled_from([UNICODE, ASCII]),
)
def test_every_line_fits_the_width_and_height(width, height, name, glyphs):
    snap = snapshot([target(name), target(name + "2", up=False, down_reason="x" * 300)])
    lines = render(snap, width, height, glyphs=glyphs)
    assert all(len(plain(line)) <= width for line in lines)
    assert height is None or len(lines) <= height


def test_ollama_before_its_first_rate_and_a_model_kept_loaded():
    """The first frame has no requests/s yet: `req -`, not an empty line; a model under `keep_alive: -1` (Ollama's
    `expires_at` centuries ahead) never unloads, one under `keep_alive: 72h` in days, not `unload in 2559036h`."""
    loaded = (
        LoadedModelView("qwen2.5:1.5b", 2e9, 2e9, 1.0, 9_000_000_000.0),
        LoadedModelView("llama3:8b", 5e9, 5e9, 1.0, 3 * 86400.0),
    )
    first = target("ol", server_type="ollama", requests_per_s=None, running=None, waiting=None, gen_tps=None,
                   prompt_tps=None, kv_ratio=None, error_ratio=None, loaded=loaded)  # fmt: skip
    lines = text(render(snapshot([first])))
    assert "  req -" in lines and "" not in lines[1:3], lines
    joined = "\n".join(lines)
    assert "model qwen2.5:1.5b · size 1.9 GiB · vram 1.9 GiB · gpu 100% · unload never" in joined
    assert "unload in 3d" in joined
    later = "\n".join(text(render(snapshot([replace(first, requests_per_s=2.5)]))))
    assert "req 2.50/s" in later


def test_a_wide_load_line_goes_on_to_the_next_line_rather_than_being_cut():
    """llama.cpp with traffic at 80 columns: `... slots 1/2 · c…` hid the context fill."""
    llama = target("llama", server_type="llamacpp", requests_per_s=19.5, running=1, waiting=0, gen_tps=312.0,
                   prompt_tps=20.0, kv_ratio=None, slots_busy=1, slots_total=2, context_ratio=0.03, error_ratio=None)  # fmt: skip
    lines = text(render(snapshot([llama]), width=80))
    assert not any(line.endswith("…") for line in lines), lines
    assert "  req 19.5/s · run 1 wait 0 · gen 312 tok/s · prompt 20 tok/s · slots 1/2" in lines
    assert "  ctx 3.0%" in lines
