"""Powertools' REST API resolver, imported without the other resolvers of its package.

``aws_lambda_powertools.event_handler/__init__.py`` imports every resolver Powertools has:
AppSync (and with it asyncio, ssl, sockets and subprocess), AppSync events, Bedrock agents,
VPC Lattice, function URLs. That is about a fifth of an API function's cold start
(``bench/cold_imports.py``), and a function behind API Gateway uses none of it.

So before the resolver is imported, the package is registered with names that load on first
use (``tollgate.lazy.deferred_package``). Its ``__init__`` only re-exports names
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

from tollgate.lazy import deferred_package

PACKAGE = "aws_lambda_powertools.event_handler"


deferred_package(PACKAGE)

from aws_lambda_powertools.event_handler.api_gateway import (  # noqa: E402 - after the package is registered
    APIGatewayRestResolver,
    Response,
)
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware  # noqa: E402

__all__ = ["PACKAGE", "APIGatewayRestResolver", "NextMiddleware", "Response"]
