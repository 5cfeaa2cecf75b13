"""The published OpenAPI document (``GET /v1/openapi.json``).

The document is generated at build time from the routes of every function and
``template.yaml`` (``make openapi``, ``tollgate_local.openapi``) and shipped as
``tollgate/data/openapi.json``; a function only reads that file, on the first request that
asks for it, so no generator code is imported at cold start.
"""

from __future__ import annotations

from functools import cache

DOCUMENT_RESOURCE = "data/openapi.json"


@cache
def openapi_document() -> str:
    """The document's JSON text, as shipped in the layer."""
    from importlib import resources  # on the first request for the document, not at cold start

    return resources.files("tollgate").joinpath(DOCUMENT_RESOURCE).read_text("utf-8")
