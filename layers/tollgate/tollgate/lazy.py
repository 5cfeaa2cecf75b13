"""Modules that only some routes of a function need, imported when one of them first runs.

``lazy_module(name)`` gives the module at once but executes it on first attribute access
(``importlib.util.LazyLoader``), so a handler can name its route-specific schemas at import
time and pay for them on the first request that uses them. mypy sees the real module::

    if TYPE_CHECKING:
        from tollgate.api.schemas import conversations
    else:
        conversations = lazy_module("tollgate.api.schemas.conversations")
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """``name`` as imported, or ready to import itself on first attribute access."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    loader.exec_module(module)
    return module
