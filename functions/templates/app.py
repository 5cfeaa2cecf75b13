"""The templates function: prompt templates with typed variables and versions (S8).

Routes are thin: they call ``TemplateService``, which checks tenancy and roles, validates, and
versions. Generating from a template is generation and lives on the generate function
(``POST /v1/templates/{id}/generate``, ``template_id`` in ``/v1/generate``); rendering here costs
nothing. Bodies are read with exact numbers (``Decimal``), and answers keep a number's digits.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tollgate import services
from tollgate.api.idempotency import idempotent
from tollgate.api.params import Body, Query, responds
from tollgate.api.resolver import build_resolver, current_caller, handle_api_event
from tollgate.api.rest import Response
from tollgate.api.schemas.templates import (
    MAX_PAGE,
    RenderOut,
    RenderRequest,
    TemplateIn,
    TemplateOut,
    TemplatePageOut,
    TemplateUpdate,
    TemplateVersionOut,
    template_json_response,
)
from tollgate.errors import NotFound
from tollgate.templates.models import CATEGORY_PATTERN, Visibility

logger = Logger()
tracer = Tracer(auto_patch=False)  # AWS and HTTP calls are patched on first use (tollgate.aws.clients)
# Fractions in bodies are read as Decimal: a number variable's default keeps its digits.
app = build_resolver(decimal_numbers=True)
idempotent_route = idempotent(services.idempotency_store, services.idempotency_ttl)

MAX_VERSION_DIGITS = 6


def _version_number(text: str) -> int:
    """A version from a path: anything that cannot be one is simply not found."""
    if not text.isdigit() or len(text) > MAX_VERSION_DIGITS or int(text) < 1:
        raise NotFound(f"No version {text[:20]!r}")
    return int(text)


@app.get("/v1/templates")
@responds(200, TemplatePageOut)
def list_templates(
    category: Annotated[str | None, Query(pattern=CATEGORY_PATTERN)] = None,
    visibility: Annotated[Visibility | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=4096)] = None,
) -> Response[str]:
    page = services.templates().list(
        current_caller(app), category=category, visibility=visibility, limit=limit, cursor=cursor
    )
    return template_json_response(200, TemplatePageOut.of(page))


@app.post("/v1/templates", middlewares=[idempotent_route])
@responds(201, TemplateOut)
def create_template(body: Annotated[TemplateIn, Body()]) -> Response[str]:
    template = services.templates().create(current_caller(app), body.definition_fields(), body.visibility)
    return template_json_response(201, TemplateOut.of(template))


@app.get("/v1/templates/<template_id>")
@responds(200, TemplateOut)
def get_template(template_id: str) -> Response[str]:
    return template_json_response(
        200, TemplateOut.of(services.templates().get(current_caller(app), template_id))
    )


@app.put("/v1/templates/<template_id>")
@responds(200, TemplateOut)
def update_template(template_id: str, body: Annotated[TemplateUpdate, Body()]) -> Response[str]:
    template = services.templates().update(
        current_caller(app), template_id, body.definition_fields(), body.base_version
    )
    return template_json_response(200, TemplateOut.of(template))


@app.delete("/v1/templates/<template_id>")
@responds(204)
def delete_template(template_id: str) -> Response[str]:
    services.templates().delete(current_caller(app), template_id)
    return Response(status_code=204, body="")


@app.get("/v1/templates/<template_id>/versions/<version>")
@responds(200, TemplateVersionOut)
def get_template_version(template_id: str, version: str) -> Response[str]:
    found = services.templates().get_version(current_caller(app), template_id, _version_number(version))
    return template_json_response(200, TemplateVersionOut.of(found))


@app.post("/v1/templates/<template_id>/render")
@responds(200, RenderOut)
def render_template(template_id: str, body: Annotated[RenderRequest | None, Body()] = None) -> Response[str]:
    request = body or RenderRequest()
    rendered = services.templates().render(
        current_caller(app), template_id, request.variables, version=request.version
    )
    return template_json_response(200, RenderOut.of(rendered))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_api_event(app, event, context)
