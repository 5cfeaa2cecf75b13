"""Powertools' REST API resolver, imported without the other resolvers of its package.

``aws_lambda_powertools.event_handler/__init__.py`` imports every resolver Powertools has:
AppSync (and with it asyncio, ssl, sockets and subprocess), AppSync events, Bedrock agents,
VPC Lattice, function URLs. That is about a fifth of an API function's cold start
(``bench/cold_imports.py``), and a function behind API Gateway uses none of it.

So before the resolver is imported, the package is registered with names that load on first
use (PEP 562 ``__getattr__``, ``_deferred_package``). Its ``__init__`` only re-exports names
of its submodules, so a name asked of the package (``from aws_lambda_powertools.event_handler
import ApiGatewayResolver``, as Powertools' own modules do) loads the one submodule that
defines it; a submodule imports as usual; any other name, or an ``__init__`` of a later
Powertools that does more than re-export, runs the real ``__init__``. Every import of
Powertools still gets what Powertools documents. Where the package was imported in full
already (a test, a tool), nothing is changed.

Tollgate imports the resolver, ``Response`` and the middleware types from here, never from the
package (``tests/unit/test_cold_imports.py`` holds every handler to it).
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

PACKAGE = "aws_lambda_powertools.event_handler"


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


def _deferred_package(name: str) -> None:
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


_deferred_package(PACKAGE)

from aws_lambda_powertools.event_handler.api_gateway import (  # noqa: E402 - after the package is registered
    APIGatewayRestResolver,
    Response,
)
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware  # noqa: E402

__all__ = ["PACKAGE", "APIGatewayRestResolver", "NextMiddleware", "Response"]
