"""Run every benchmark: `python -m bench [NAME ...] [--markdown FILE] [--no-docs]`.

Each module in bench/ with a `main()` is one benchmark (helpers excepted). Each runs in its own Python process
(`python -m bench.NAME`, which calls its `main()`), so one benchmark's memory, threads or patched modules cannot
touch another's figures. Figures a benchmark hands to `bench.report.record` become rows of the markdown table
printed at the end; a benchmark that only prints gets its output quoted below it. A run of all of them also
writes that table into docs/performance.md (between its `bench:begin`/`bench:end` markers).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin (written by `python -m bench`) -->", "<!-- bench:end -->"
HELPERS = {"__init__", "__main__", "report", "pageserver"}
TIMEOUT_S = 240


def discover() -> list[str]:
    """Modules of bench/ that define a top-level main()."""
    names = []
    for path in sorted(HERE.glob("*.py")):
        if path.stem in HELPERS or path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            names.append(path.stem)
    return names


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPU ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def run_one(name: str, results: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    env = dict(os.environ, BENCH_RESULTS=str(results), PYTHONPATH=str(HERE.parent))
    proc = subprocess.Popen(
        [sys.executable, "-m", f"bench.{name}"],
        cwd=HERE.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    assert proc.stdout is not None
    deadline = started + TIMEOUT_S
    for line in proc.stdout:  # stream as it runs
        print(f"  {line}", end="", flush=True)
        output.append(line)
        if time.monotonic() > deadline:
            proc.kill()
            output.append(f"(killed after {TIMEOUT_S}s)\n")
            break
    rc = proc.wait()
    return rc, "".join(output), time.monotonic() - started


def table(rows: list[dict], quoted: dict[str, str], failed: dict[str, int], header: str) -> str:
    out = [
        header,
        "",
        "| Benchmark | Figure | Ours | Baseline (same run) | Baseline figure | Ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["benchmark"], r["figure"], r["value"], r["baseline"], r["baseline_value"], r["ratio"]]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for name, rc in failed.items():
        out.append(f"| {name} | failed (exit {rc}) | | | | |")
    for name, text in quoted.items():
        out += ["", f"`python -m bench.{name}`:", "", "```", text.rstrip(), "```"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the benchmarks; print a markdown table.")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all of %(prog)s)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help=f"do not write the table into {DOCS.relative_to(HERE.parent)} (a full run does)",
    )
    args = parser.parse_args(argv)
    available = discover()
    if args.list:
        print("\n".join(available))
        return 0
    unknown = [n for n in args.names if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}")
    names = args.names or available
    started = time.monotonic()
    rows: list[dict] = []
    quoted: dict[str, str] = {}
    failed: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name in names:
            results = Path(tmp) / f"{name}.jsonl"
            print(f"== bench.{name}", flush=True)
            rc, output, took = run_one(name, results)
            print(f"   ({took:.1f} s, exit {rc})", flush=True)
            recorded = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
            rows.extend(recorded)
            if rc != 0:
                failed[name] = rc
            elif not recorded:
                quoted[name] = output
    total = time.monotonic() - started
    header = f"Measured on {machine()}; `python -m bench` took {total:.0f} s."
    text = table(rows, quoted, failed, header)
    print()
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    if not args.names and not args.no_docs:
        write_docs(text)
    return 1 if failed else 0


def write_docs(table_text: str, path: Path = DOCS) -> None:
    """Replace the generated part of docs/performance.md with this run's table."""
    doc = path.read_text(encoding="utf-8")
    head, sep, rest = doc.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise SystemExit(f"{path}: markers {BEGIN!r} / {END!r} not found")
    path.write_text(f"{head}{BEGIN}\n{table_text}{END}{tail}", encoding="utf-8")
    print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    sys.exit(main())
