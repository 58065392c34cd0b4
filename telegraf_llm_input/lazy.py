"""Import a heavy dependency on first use, not at start-up.

The agent's start-up and resident memory sit beside the model: a library that a gather with the
given config never touches (the HTTP client when no server is found, the YAML parser without a
config file) should cost nothing. `lazy_import(name)` returns the module object at once (also put
in `sys.modules`, so every other `import name` shares it) and runs the module's code on the first
attribute access (the standard library's `importlib.util.LazyLoader`).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
