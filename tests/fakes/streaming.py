"""A scripted streaming model server on 127.0.0.1: real wire formats, delays you set.

Speaks what the probe talks to (shapes taken from the real servers' source/docs):
- `POST /v1/chat/completions` SSE chunks (`chat.completion.chunk`): a role chunk, `delta.content`,
  reasoning in `delta.reasoning` (vLLM, Ollama, mlx) / `delta.reasoning_content` (llama.cpp, SGLang,
  LM Studio) / inline `<think>...</think>`; a finish chunk; usage in the finish chunk (older
  llama.cpp) or a separate `choices: []` chunk (vLLM, Ollama, mlx, LM Studio); `data: [DONE]`.
- `POST /v1/completions` SSE `text_completion` chunks (`choices[].text`).
- `POST /api/chat`, `/api/generate` Ollama NDJSON, final `done: true` object with nanosecond
  durations, zero values omitted (Go `omitempty`).
- `POST /completion` llama.cpp native SSE (`content`, `stop`, final `timings`).
- As Ollama, `POST /api/show` with the model's `capabilities` (`completion`, or `embedding` for `embedding_models`;
  server/routes.go ShowHandler, model.Capabilities: read from the model's files, nothing loaded), and a chat or
  generate request for an embedding model answered 400 `"<name>" does not support chat` (`generate`) before the
  scheduler is asked (scheduleRunner checks the capability first: nothing loaded, no countdown moved).
- `GET /v1/models`; as Ollama (when `ollama_version` is set) `/api/version`, `/api/tags` and `/api/ps`, with
  what Ollama holds in memory modelled by `OllamaMemory`: a request for a model not loaded loads it, and when a
  request ends the model's `expires_at` becomes now + its `keep_alive` (Ollama's scheduler).

The schedule is absolute from the moment the request body was read: the role chunk at once, token
i at `ttft_s + i * interval_s`, so a late write never shifts the later ones. Every request is
recorded (path, headers, JSON body) for assertions.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal, NamedTuple

ReasoningStyle = Literal["reasoning", "reasoning_content", "think_tags"]


@dataclass
class Script:
    ttft_s: float = 0.2
    interval_s: float = 0.02
    answer: tuple[str, ...] = tuple(f" {i}" for i in range(1, 11))
    reasoning: tuple[str, ...] = ()
    reasoning_style: ReasoningStyle = "reasoning_content"
    usage: Literal["separate", "final_chunk", "none"] = "separate"
    reasoning_tokens_in_usage: bool = False
    prompt_tokens: int = 17
    role_chunk: bool = True
    done_marker: bool = True
    cut_after: int | None = None
    """Close the connection abruptly after this many token chunks."""
    malformed_at: int | None = None
    """Send a broken JSON chunk in place of token number N (0-based)."""
    status: int = 200
    models: tuple[str, ...] = ("fake-model",)
    loaded_models: tuple[str, ...] = ()
    """Ollama: what is in memory when the server starts (`OllamaMemory`); empty = nothing loaded."""
    embedding_models: tuple[str, ...] = ()
    """Ollama: models whose `/api/show` capabilities are `["embedding"]` (a chat or generate for one: 400)."""
    lmstudio_models: dict | None = None
    """LM Studio's `GET /api/v0/models` answer (e.g. tests/fixtures/lmstudio); None: not LM Studio."""
    keep_alive_s: float = 300.0
    """Ollama's default `keep_alive` (`OLLAMA_KEEP_ALIVE`, 5 minutes) for a request that sends none."""
    load_ms: float = 0.0
    ollama_version: str | None = None
    """Answer Ollama's `GET /api/version` (off by default: auto-detection would then say ollama)."""
    size_vram: int = 1000
    """`/api/ps` bytes in GPU memory per loaded model (of `size` 1000)."""
    prefill_ms: float = 35.0
    cache_tokens: int = 0

    def tokens(self) -> list[tuple[str, str]]:
        """(kind, text) in stream order; kind is `reasoning` or `content`."""
        if not self.reasoning:
            return [("content", t) for t in self.answer]
        if self.reasoning_style == "think_tags":
            inner = ["<think>", *self.reasoning, "</think>"]
            return [("content", t) for t in inner] + [("content", t) for t in self.answer]
        return [("reasoning", t) for t in self.reasoning] + [("content", t) for t in self.answer]

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens())


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None
    query: str = ""
    """What followed `?` (routes match the path alone, as gin's router does)."""


class _Cut(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real servers (Go's net/http, llama.cpp's): a token leaves when written
    server: _Server

    def log_message(self, format, *args):  # keep test output clean
        pass

    # --- plumbing -------------------------------------------------------------------------
    def _record(self, body: dict | None) -> None:
        with self.server.lock:
            self.server.requests.append(Recorded(self.command, self.path, dict(self.headers.items()), body, self.query))

    def _json(self, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # --- GET ------------------------------------------------------------------------------
    def _route(self) -> None:
        """Routes match the path alone (gin's router); the query is kept on the record."""
        self.path, _, self.query = self.path.partition("?")

    def do_GET(self):
        self._route()
        self._record(None)
        script = self.server.script
        if self.path == "/v1/models":
            self._json(
                200,
                {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in script.models]},
            )
        elif self.path == "/api/version" and script.ollama_version:
            self._json(200, {"version": script.ollama_version})
        elif self.path == "/api/tags" and script.ollama_version:
            self._json(200, {"models": [{"name": m, "model": m, "size": 1000} for m in script.models]})
        elif self.path == "/api/ps" and script.ollama_version:
            self._json(200, {"models": self.server.ollama().ps(script.size_vram)})
        elif self.path == "/api/v0/models" and script.lmstudio_models is not None:
            self._json(200, script.lmstudio_models)
        else:
            self._json(404, {"error": "not found"})

    # --- POST -----------------------------------------------------------------------------
    def do_POST(self):
        self._route()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        start = time.monotonic()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(body)
        script = self.server.script
        if script.ollama_version and self.path == "/api/show":
            self._show(body)
            return
        model = body.get("model") if isinstance(body, dict) else None
        if self.path in OLLAMA_NATIVE and model in script.embedding_models:
            what = "chat" if self.path == "/api/chat" else "generate"
            self._json(400, {"error": f"{json.dumps(model)} does not support {what}"})
            return
        with self.server.lock:
            self.server.active += 1
            self.server.max_active = max(self.server.max_active, self.server.active)
        self._ollama_begin(body)
        try:
            self._respond(start)
        finally:
            self._ollama_end()
            with self.server.lock:
                self.server.active -= 1

    def _show(self, body) -> None:
        """Ollama's `/api/show` (api.ShowResponse, the fields the probe reads): `{"model": name}`, 404 if unknown."""
        script = self.server.script
        name = (body.get("model") or body.get("name")) if isinstance(body, dict) else None
        known = {*script.models, *script.loaded_models, *script.embedding_models}
        if name not in known:
            self._json(404, {"error": f"model '{name}' not found"})
            return
        embeds = name in script.embedding_models
        family = "nomic-bert" if embeds else "llama"
        self._json(
            200,
            {
                "modelfile": f"FROM {name}\n",
                "details": {"format": "gguf", "family": family, "families": [family], "quantization_level": "F16"},
                "model_info": {"general.architecture": family},
                "capabilities": ["embedding"] if embeds else ["completion"],
                "modified_at": "2025-10-26T17:15:24.166576Z",
            },
        )

    def _ollama_begin(self, body) -> None:
        """A native Ollama request: its model is loaded if it was not; released when the answer ends."""
        self._ollama_release = None
        if self.path in OLLAMA_NATIVE and isinstance(body, dict):
            memory, model = self.server.ollama(), body.get("model")
            memory.use(model)
            self._ollama_release = lambda: memory.release(model, body.get("keep_alive"), body)

    def _ollama_end(self) -> None:
        """Sets the model's `expires_at` (once): before the answer's last bytes, so a client that has read the
        whole answer sees it done."""
        release, self._ollama_release = self._ollama_release, None
        if release is not None:
            release()

    def _respond(self, start: float) -> None:
        script = self.server.script
        kinds = {
            "/v1/chat/completions": "chat",
            "/api/v0/chat/completions": "chat",
            "/v1/completions": "cmpl",
            "/api/chat": "ollama_chat",
            "/api/generate": "ollama_generate",
            "/completion": "llamacpp",
        }
        query = self.query  # the path without it: `_route`
        kind = kinds.get(self.path)
        if kind is None:
            self._json(404, {"error": "not found"})
            return
        status = int(query.removeprefix("status=")) if query.startswith("status=") else script.status
        if status != 200:  # the script's, or one request's own (`?status=500`)
            self._json(status, {"error": {"message": "scripted failure", "code": status}})
            return
        ndjson = kind.startswith("ollama")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson" if ndjson else "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        frame = (
            (lambda obj: (json.dumps(obj) + "\n").encode())
            if ndjson
            else (lambda obj: b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n")
        )
        try:
            for due, obj in _events(kind, script):
                wait = start + due - time.monotonic()
                while wait > 0:
                    time.sleep(wait)
                    wait = start + due - time.monotonic()
                if obj is _CUT:
                    raise _Cut
                self._chunk(frame(obj))
            self._ollama_end()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except _Cut:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


_CUT = object()
_MALFORMED = b'{"choices": [{"delta": {"content": "x"'


def _events(kind: str, s: Script):
    """(seconds after request, object) in order; `_CUT` ends the connection, bytes are sent raw."""
    model = s.models[0] if s.models else "fake-model"
    tokens = s.tokens()
    n = len(tokens)
    usage = {"prompt_tokens": s.prompt_tokens, "completion_tokens": n, "total_tokens": s.prompt_tokens + n}
    if s.reasoning_tokens_in_usage:
        usage["completion_tokens_details"] = {"reasoning_tokens": sum(1 for k, _ in tokens if k == "reasoning")}
    end = s.ttft_s + max(n - 1, 0) * s.interval_s
    timings = {
        "cache_n": s.cache_tokens,
        "prompt_n": s.prompt_tokens - s.cache_tokens,
        "prompt_ms": s.prefill_ms,
        "prompt_per_token_ms": 1.0,
        "prompt_per_second": 1000.0,
        "predicted_n": n,
        "predicted_ms": max(n - 1, 0) * s.interval_s * 1000,
        "predicted_per_token_ms": s.interval_s * 1000,
        "predicted_per_second": 1.0 / s.interval_s if s.interval_s else 0.0,
    }

    def chat(delta, finish=None):
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def token(kind_, text):
        if kind == "chat":
            return chat({kind_ if kind_ == "content" else s.reasoning_style: text})
        if kind == "cmpl":
            return {
                "id": "cmpl-fake",
                "object": "text_completion",
                "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": None}],
            }
        if kind == "ollama_chat":
            message = {"role": "assistant", "content": text if kind_ == "content" else ""}
            if kind_ == "reasoning":
                message["thinking"] = text
            return {"model": model, "created_at": "2025-10-26T17:15:24.097767Z", "message": message, "done": False}
        if kind == "ollama_generate":
            out = {
                "model": model,
                "created_at": "2025-10-26T17:15:24.097767Z",
                "response": text if kind_ == "content" else "",
                "done": False,
            }
            if kind_ == "reasoning":
                out["thinking"] = text
            return out
        return {
            "index": 0,
            "content": text,
            "tokens": [],
            "stop": False,
            "id_slot": 0,
            "tokens_predicted": 0,
            "tokens_evaluated": s.prompt_tokens,
        }

    if s.role_chunk and kind == "chat":
        yield 0.0, chat({"role": "assistant", "content": None})
    for i, (kind_, text) in enumerate(tokens):
        due = s.ttft_s + i * s.interval_s
        if s.cut_after is not None and i >= s.cut_after:
            yield due, _CUT
            return
        yield due, _MALFORMED if s.malformed_at == i else token(kind_, text)
    if s.cut_after is not None:
        yield end, _CUT
        return
    if kind == "chat":
        final = chat({}, "stop")
        if s.usage == "final_chunk":
            final["usage"] = usage
            final["timings"] = timings
        yield end, final
        if s.usage == "separate":
            yield (
                end,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                },
            )
    elif kind == "cmpl":
        yield (
            end,
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "model": model,
                "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
            },
        )
        if s.usage != "none":
            yield end, {"id": "cmpl-fake", "object": "text_completion", "model": model, "choices": [], "usage": usage}
    elif kind.startswith("ollama"):
        final = {
            "model": model,
            "created_at": "2025-10-26T17:15:24.166576Z",
            "done": True,
            "done_reason": "stop",
            "total_duration": int((end + s.load_ms / 1000) * 1e9),
            "load_duration": int(s.load_ms * 1e6),
            "prompt_eval_count": s.prompt_tokens,
            "prompt_eval_duration": int(s.prefill_ms * 1e6),
            "eval_count": n,
            "eval_duration": int(max(n, 1) * s.interval_s * 1e9),
        }
        if kind == "ollama_chat":
            final["message"] = {"role": "assistant", "content": ""}
        else:
            final["response"] = ""
        yield end, {k: v for k, v in final.items() if v != 0}
        return  # NDJSON: no [DONE]
    else:
        yield (
            end,
            {
                "index": 0,
                "content": "",
                "tokens": [],
                "id_slot": 0,
                "stop": True,
                "model": model,
                "tokens_predicted": n,
                "tokens_evaluated": s.prompt_tokens,
                "stop_type": "eos",
                "stopping_word": "",
                "tokens_cached": s.prompt_tokens + n,
                "timings": timings,
            },
        )
    if s.done_marker:
        yield end, b"[DONE]"


OLLAMA_NATIVE = ("/api/chat", "/api/generate")
FOREVER_NS = 2**63 - 1
"""Go's `math.MaxInt64` nanoseconds: what Ollama makes of a negative `keep_alive` ("keep loaded forever")."""
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_seconds(value, default: float) -> float | None:
    """Ollama's `api.Duration` from JSON (api/types.go `UnmarshalJSON`): a number is whole seconds
    (`time.Duration(int(t) * int(time.Second))`: 12.9 is 12 s), a string a Go duration; negative = forever
    (returned as None); absent = the server's default."""
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value) if value < 0 else float(int(value))
    else:
        text, sign = str(value), 1.0
        if text.startswith("-"):
            text, sign = text[1:], -1.0
        parts = _GO_DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"time: invalid duration {value!r}")
        seconds = sign * sum(float(n) * _GO_UNITS[u] for n, u in parts)
    return None if seconds < 0 else seconds


def rfc3339nano(epoch_ns: int) -> str:
    """Go's `time.Time` JSON (RFC 3339 with up to 9 fractional digits, trailing zeros dropped), in UTC."""
    seconds, ns = divmod(epoch_ns, 10**9)
    head = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ns:09d}".rstrip("0")
    return f"{head}.{frac}Z" if frac else f"{head}Z"


class Released(NamedTuple):
    """One request's end as Ollama's scheduler handles it (`OllamaMemory.released`)."""

    at_ns: int
    model: str
    expires_ns: int | None
    body: dict | None


@dataclass
class OllamaMemory:
    """What an Ollama server holds: model -> `expires_at` (Unix ns), as its scheduler keeps it.

    A request for a model that is not loaded loads it (recorded in `loads`); when a request ends, its model's
    `expires_at` becomes now + the request's `keep_alive` (0 unloads it at once, negative keeps it forever),
    which is why a request restarts the unload countdown. A model whose time is up is gone."""

    default_keep_alive_s: float = 300.0
    expires: dict[str, int] = field(default_factory=dict)
    loads: list[str] = field(default_factory=list)
    """Models loaded because a request named them."""
    requested: list[tuple[str, bool]] = field(default_factory=list)
    """(model, loaded when asked) for every generation request."""
    session: dict[str, float | None] = field(default_factory=dict)
    """model -> its runner's session duration (seconds; None: forever), as sched.go keeps it: set by the last
    request that sent a `keep_alive` (useLoadedRunner: `if pending.sessionDuration != nil`); a request without one
    keeps it; a model loaded anew starts from the default."""
    released: list[Released] = field(default_factory=list)
    """Every request's end, in order: when, the model, the `expires_at` it set (None: unloaded), its body."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _expire(self) -> None:
        now = time.time_ns()
        for model in [m for m, t in self.expires.items() if t <= now]:
            del self.expires[model]
            self.session.pop(model, None)

    def ps(self, size_vram: int) -> list[dict]:
        """`/api/ps` models (api.ProcessModelResponse), the latest `expires_at` first, as Ollama sorts them."""
        with self.lock:
            self._expire()
            return [
                {
                    "name": m,
                    "model": m,
                    "size": 1000,
                    "digest": "a80c4f17acd5",
                    "details": {"format": "gguf", "family": "llama", "quantization_level": "Q4_K_M"},
                    "expires_at": rfc3339nano(t),
                    "size_vram": size_vram,
                }
                for m, t in sorted(self.expires.items(), key=lambda item: -item[1])
            ]

    def use(self, model) -> None:
        with self.lock:
            self._expire()
            loaded = model in self.expires
            self.requested.append((model, loaded))
            if not loaded:
                self.loads.append(model)
                self.expires[model] = time.time_ns() + int(self.default_keep_alive_s * 1e9)

    def release(self, model, keep_alive, body: dict | None = None) -> None:
        given = keep_alive_seconds(keep_alive, self.default_keep_alive_s) if keep_alive is not None else None
        with self.lock:
            if keep_alive is not None:
                self.session[model] = given
            seconds = self.session.get(model, self.default_keep_alive_s)
            now = time.time_ns()
            if seconds == 0:
                self.expires.pop(model, None)
                self.session.pop(model, None)
            else:
                self.expires[model] = now + (FOREVER_NS if seconds is None else int(seconds * 1e9))
            self.released.append(Released(now, model, self.expires.get(model), body))

    def expires_at(self, model: str) -> int | None:
        with self.lock:
            self._expire()
            return self.expires.get(model)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, script: Script):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self._ollama: OllamaMemory | None = None

    def ollama(self) -> OllamaMemory:
        """What the Ollama server holds, from the script's `loaded_models` when first asked."""
        with self.lock:
            if self._ollama is None:
                ka = self.script.keep_alive_s
                until = time.time_ns() + int(ka * 1e9)
                self._ollama = OllamaMemory(ka, {m: until for m in self.script.loaded_models})
            return self._ollama


class StreamingServer:
    """`with StreamingServer(Script(...)) as srv: srv.url ...`; change `srv.script` between requests."""

    def __init__(self, script: Script | None = None):
        self._server = _Server(script or Script())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def script(self) -> Script:
        return self._server.script

    @script.setter
    def script(self, value: Script) -> None:
        self._server.script = value

    def update(self, **changes) -> None:
        self._server.script = replace(self._server.script, **changes)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Recorded]:
        with self._server.lock:
            return list(self._server.requests)

    @property
    def ollama(self) -> OllamaMemory:
        """Ollama's memory (models loaded, their `expires_at`, loads caused by requests)."""
        return self._server.ollama()

    @property
    def max_concurrent_posts(self) -> int:
        """The most POSTs (probes) that were being answered at the same time."""
        with self._server.lock:
            return self._server.max_active

    def posts(self) -> list[Recorded]:
        """The requests that ask a model for an answer (Ollama's `/api/show` only reads a model's files)."""
        return [r for r in self.requests if r.method == "POST" and r.path != "/api/show"]

    def shows(self) -> list[str]:
        """The models Ollama's `/api/show` was asked about, in order."""
        return [r.body["model"] for r in self.requests if r.path == "/api/show" and isinstance(r.body, dict)]

    def start(self) -> StreamingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StreamingServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    """`python3 -m tests.fakes.streaming TTFT_S INTERVAL_S TOKENS`: serve until killed; prints the port."""
    import sys

    ttft, interval, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    srv = StreamingServer(Script(ttft_s=ttft, interval_s=interval, answer=tuple(f" {i}" for i in range(n)))).start()
    print(srv.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
