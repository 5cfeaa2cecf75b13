"""The accounts function: health, the caller, organizations and API keys (S2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

import tollgate
from tollgate import services
from tollgate.api.document import openapi_document
from tollgate.api.idempotency import idempotent
from tollgate.api.params import Body, Query, responds
from tollgate.api.resolver import build_resolver, current_caller, handle_api_event, json_response
from tollgate.api.rest import Response
from tollgate.api.schemas.accounts import (
    CreateKeyRequest,
    CreateOrgRequest,
    HealthOut,
    IssuedKeyOut,
    KeyListOut,
    KeyOut,
    MeOut,
    OrgOut,
    RotateKeyRequest,
    UpdateOrgRequest,
    valid_content_policy,
    valid_limit_overrides,
)
from tollgate.identity.models import Role

logger = Logger()
tracer = Tracer(auto_patch=False)  # AWS and HTTP calls are patched on first use (tollgate.aws.clients)
app = build_resolver()
idempotent_route = idempotent(services.idempotency_store, services.idempotency_ttl)


@app.get("/v1/health")
def health() -> HealthOut:
    return HealthOut(status="ok", version=tollgate.__version__, time=datetime.now(UTC))


@app.get("/v1/openapi.json")
@responds(200, description="This API's OpenAPI 3.1 document")
def openapi() -> Response[str]:
    """The OpenAPI document of the whole API (no key needed)."""
    return Response(status_code=200, content_type="application/json", body=openapi_document())


@app.get("/v1/me")
def me() -> MeOut:
    caller = current_caller(app)
    org = services.identity().get_org(caller, caller.org_id) if caller.org_id else None
    return MeOut(
        key_id=caller.key_id,
        user=caller.user,
        role=caller.role.value,
        org_id=caller.org_id,
        plan=caller.plan,
        org=OrgOut.of(org) if org else None,
    )


@app.post("/v1/orgs", middlewares=[idempotent_route])
@responds(201, OrgOut)
def create_org(body: Annotated[CreateOrgRequest, Body()]) -> Response[Any]:
    org = services.identity().create_org(
        current_caller(app), name=body.name, plan=body.plan, billing_anchor_day=body.billing_anchor_day
    )
    return json_response(201, OrgOut.of(org))


@app.get("/v1/orgs/<org_id>")
def get_org(org_id: str) -> OrgOut:
    return OrgOut.of(services.identity().get_org(current_caller(app), org_id))


@app.patch("/v1/orgs/<org_id>")
def update_org(org_id: str, body: Annotated[UpdateOrgRequest, Body()]) -> OrgOut:
    settings: dict[str, object] | None = None
    if body.settings is not None:
        settings = {name: getattr(body.settings, name) for name in body.settings.model_fields_set}
        if settings.get("content_policy") is not None:
            settings["content_policy"] = valid_content_policy(settings["content_policy"])
    overrides = valid_limit_overrides(body.limit_overrides) if body.limit_overrides is not None else None
    org = services.identity().update_org(
        current_caller(app),
        org_id,
        name=body.name,
        plan=body.plan,
        settings=settings,
        limit_overrides=overrides,
    )
    return OrgOut.of(org)


@app.post("/v1/orgs/<org_id>/keys")
@responds(201, IssuedKeyOut)
def create_key(org_id: str, body: Annotated[CreateKeyRequest, Body()]) -> Response[Any]:
    issued = services.identity().issue_key(
        current_caller(app),
        org_id,
        user=body.user,
        name=body.name,
        role=Role(body.role),
        expires_at=body.expires_at,
    )
    return json_response(201, IssuedKeyOut.issued(issued), headers={"Cache-Control": "no-store"})


@app.get("/v1/keys")
def list_keys(org_id: Annotated[str | None, Query(max_length=40)] = None) -> KeyListOut:
    keys = services.identity().list_keys(current_caller(app), org_id)
    return KeyListOut(items=[KeyOut.of(k) for k in keys])


@app.delete("/v1/keys/<key_id>")
def revoke_key(key_id: str) -> KeyOut:
    return KeyOut.of(services.identity().revoke_key(current_caller(app), key_id))


@app.post("/v1/keys/<key_id>/rotate")
@responds(201, IssuedKeyOut)
def rotate_key(key_id: str, body: Annotated[RotateKeyRequest | None, Body()] = None) -> Response[Any]:
    grace = timedelta(seconds=body.grace_seconds if body else 0)
    issued = services.identity().rotate_key(current_caller(app), key_id, grace)
    return json_response(201, IssuedKeyOut.issued(issued), headers={"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_api_event(app, event, context)
