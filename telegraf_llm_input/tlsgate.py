"""asyncio without `ssl` until something uses TLS: a plain-http agent maps no libssl/libcrypto (~4 MiB of RSS).

Why: `import asyncio` imports `ssl` (3.10-3.13: `base_events`, `selector_events` and `sslproto` each bind the
name at import, and work with it None), and loading `_ssl` maps OpenSSL and initialises it; the usual agent
(loopback targets, stdout) never makes a TLS connection.

`import_asyncio()` (the program's first step, `__main__`) imports asyncio with `ssl` hidden, then waits for the
first `import ssl` anywhere (an https target's TLS context, httpx, an InfluxDB client, the proxy's upstream): right
after `ssl` is loaded, and before its importer gets it, the three asyncio modules get the real module
(`sslproto` re-run, as it derives names from it at import). So asyncio has TLS from the moment anything could
ask it for TLS, whichever config, command or library wants it first; verification settings are the caller's, as
before. A no-op when asyncio or ssl is already loaded (tests, another program importing ours).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.abc import Loader  # not at run time: importlib.abc brings importlib.resources, tempfile, lzma...

_BINDERS = ("asyncio.base_events", "asyncio.selector_events")
"""asyncio modules that look the name `ssl` up when TLS is asked for (`sslproto` derives more at import)."""


def import_asyncio() -> None:
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # how the import system spells "not installed"
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]
    sys.meta_path.insert(0, _ArmOnFirstImport())


def _arm(ssl: ModuleType) -> None:
    for name in _BINDERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "ssl", ssl) is None:
            module.ssl = ssl  # type: ignore[attr-defined]
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and getattr(sslproto, "ssl", ssl) is None:
        importlib.reload(sslproto)


class _ArmOnFirstImport:
    """A meta path finder (the protocol, not importlib.abc's class): finds `ssl` as the other finders would, with
    a loader that arms asyncio once the module has run."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "ssl":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("ssl")
        if spec is None or spec.loader is None:
            return None
        spec.loader = _ArmingLoader(spec.loader)  # type: ignore[assignment]  # a Loader by protocol
        return spec


class _ArmingLoader:
    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _arm(module)


def is_tls_error(exc: BaseException) -> bool:
    """`isinstance(exc, ssl.SSLError)` without loading `ssl`: before it is loaded, no exception can be one."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLError)
