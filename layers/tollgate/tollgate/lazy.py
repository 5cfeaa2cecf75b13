"""Modules that only some routes of a function need, imported when one of them first runs.

``lazy_module(name)`` gives the module at once but executes it on first attribute access
(``importlib.util.LazyLoader``), so a handler can name its route-specific schemas at import
time and pay for them on the first request that uses them. mypy sees the real module::

    if TYPE_CHECKING:
        from tollgate.api.schemas import conversations
    else:
        conversations = lazy_module("tollgate.api.schemas.conversations")

``deferred_package(name)`` registers a package without running its ``__init__``, when that
``__init__`` only re-exports its submodules' names: each name then loads the one submodule it
comes from (PEP 562 ``__getattr__``), so importing one submodule does not import them all
(``tollgate.api.rest``: Powertools' REST resolver without its other resolvers).
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any


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


def _reexports(source: str, package: str) -> dict[str, tuple[str, str]] | None:
    """What an ``__init__`` made only of ``from <package>.<module> import <name>`` lines (and
    a docstring and ``__all__``) binds: {name: (module, name there)}; ``None`` for any other."""
    bound: dict[str, tuple[str, str]] = {}
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith(f"{package}.")
        ):
            for alias in node.names:
                bound[alias.asname or alias.name] = (str(node.module), alias.name)
        elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or (
            isinstance(node, ast.Assign)
            and all(isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets)
        ):
            continue
        else:
            return None
    return bound


def deferred_package(name: str) -> None:
    """Register package ``name`` without running its ``__init__``, if that only re-exports
    (else import it as usual). A name it re-exports loads the one submodule it comes from; a
    submodule imports as usual; any other name runs the ``__init__``, once."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(f"No package named {name!r}", name=name)
    loader = spec.loader
    source = loader.get_source(name) if isinstance(loader, importlib.abc.InspectLoader) else None
    reexports = _reexports(source, name) if source is not None else None
    if reexports is None:
        importlib.import_module(name)
        return
    package = importlib.util.module_from_spec(spec)

    def __getattr__(attribute: str) -> Any:  # the module's PEP 562 hook
        if attribute in reexports:
            module, original = reexports[attribute]
            value = getattr(importlib.import_module(module), original)
            setattr(package, attribute, value)
            return value
        if not attribute.startswith("__") and importlib.util.find_spec(f"{name}.{attribute}"):
            return importlib.import_module(f"{name}.{attribute}")
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, attribute)

    package.__dict__["__getattr__"] = __getattr__
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    setattr(importlib.import_module(parent), child, package)
