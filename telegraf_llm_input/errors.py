"""The kinds of failure, as types.

A scrape's `FetchError.kind` (log lines, retry and detection rules) and a probe's `error` tag (in the
schema) are each a closed set: a `Literal`, so a misspelt kind is a type error, not a silent new value.
Both start from the same question -- what did the connection do? -- a `Transport`, answered once by
`http.transport()` for the two `_classify`s (http.py, probe/runner.py). `FetchError` lives here, below `http11`
(whose `Response` raises it) and `http` (which raises it for everything else).
"""

from __future__ import annotations

from typing import Literal

FetchKind = Literal[
    "refused", "timeout", "http_status", "too_big", "bad_encoding", "bad_body", "tls", "unknown", "error"
]
"""Why a request to a target failed (`FetchError.kind`)."""


class FetchError(Exception):
    """A failed request, as one line that is safe to log (no token, no credentials)."""

    def __init__(self, kind: FetchKind, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


ProbeError = Literal["connect", "timeout", "http_4xx", "http_5xx", "bad_stream", "empty"]
"""Why a probe failed: the `llm_probe` `error` tag."""

Transport = Literal["connect_timeout", "timeout", "tls", "connect", "broken", "other"]
"""What the connection did: no connection within the time, no answer within the time, a TLS failure, no
connection, a connection that broke, anything else."""
