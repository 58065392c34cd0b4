"""What the proxy's page and the agent's `proxy` adapter agree on: the path, the names, the outcomes.

Constants only (no imports), so the adapter (`servers/proxy.py`) reads them without loading the proxy.
"""

PAGE_PATH = "/proxy/metrics"
"""Under the proxy's own prefix: no model server has this path, so it never hides an upstream one."""
PREFIX = "llm_proxy_"

CLIENT_ERROR = "http_4xx"
"""The `outcome` of a request the upstream answered 4xx: the caller's mistake (`client_error_ratio`), not a failure
of the server (`error_ratio`), as the Ollama log source counts them."""
OUTCOMES_FAILED = (
    "http_5xx",
    "stream_error",
    "upstream_refused",
    "upstream_timeout",
    "upstream_closed",
    "upstream_unreachable",
    "upstream_tls",
    "upstream_bad_response",
)
"""`outcome` label values that are failed requests (besides `ok`, CLIENT_ERROR, and `cancelled`: the client left)."""
