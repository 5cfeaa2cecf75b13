"""The credits function: balance, transactions, availability, alerts, purchases, grants and
the signed payment webhook (S4).

Amounts: credits are JSON numbers with at most 4 decimals, USD with at most 6; inside they are
integer units (1/10,000 credit) and micro-USD. Every POST that moves money honours
``Idempotency-Key`` and hands the ledger an operation id derived from it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tollgate import services
from tollgate.api.idempotency import idempotency_key_of, idempotent
from tollgate.api.params import Body, Query, responds
from tollgate.api.resolver import build_resolver, current_caller, handle_api_event
from tollgate.api.rest import Response
from tollgate.api.schemas.common import exact_json_response
from tollgate.api.schemas.credits import (
    AlertListOut,
    AlertOut,
    AvailabilityOut,
    BalanceOut,
    GrantOut,
    GrantRequest,
    PaymentEvent,
    PaymentEventOut,
    PurchaseOut,
    PurchaseRequest,
    PurchaseTransitionRequest,
    TransactionOut,
    TransactionPageOut,
    decode_cursor,
    encode_cursor,
)
from tollgate.credits.access import acting_for, derived_id, operation_id, require_admin, require_purchaser
from tollgate.credits.alerts import publish_recent_alerts
from tollgate.credits.packages import load_packages
from tollgate.credits.payments import (
    PAYMENT_EVENT_TRANSITIONS,
    PURCHASE_ID_PREFIX,
    Transition,
    check_purchase_id,
    transition_purchase,
)
from tollgate.credits.webhooks import SIGNATURE_HEADER, verify_signature
from tollgate.errors import FieldError, ValidationFailed
from tollgate.lazy import lazy_module
from tollgate.settings import get_settings

if TYPE_CHECKING:
    from tollgate.metering import models, pricing
else:  # the estimate and grant routes use these (the others reach them through services.metering())
    models = lazy_module("tollgate.metering.models")
    pricing = lazy_module("tollgate.metering.pricing")

logger = Logger()
tracer = Tracer(auto_patch=False)  # AWS and HTTP calls are patched on first use (tollgate.aws.clients)
# Fractions in request bodies are read as Decimal, never as float: money stays exact (S4).
app = build_resolver(decimal_numbers=True)
idempotent_route = idempotent(services.idempotency_store, services.idempotency_ttl)

OrgIdQuery = Annotated[str | None, Query(min_length=1, max_length=40)]


def _idempotency_key() -> str | None:
    return idempotency_key_of(app.current_event.headers or {})


# -- reading -------------------------------------------------------------------------------------


@app.get("/v1/credits/balance")
@responds(200, BalanceOut)
def balance(org_id: OrgIdQuery = None) -> Response[str]:
    _, org = acting_for(current_caller(app), org_id, services.identity())
    return exact_json_response(200, BalanceOut.of(services.metering().balance(org)))


@app.get("/v1/credits/transactions")
@responds(200, TransactionPageOut)
def transactions(
    cursor: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    org_id: OrgIdQuery = None,
) -> Response[str]:
    _, org = acting_for(current_caller(app), org_id, services.identity())
    page = services.metering().transactions(org, decode_cursor(org, cursor), limit)
    out = TransactionPageOut(
        items=[TransactionOut.of(entry) for entry in page.entries],
        next_cursor=encode_cursor(org, page.next_cursor),
    )
    return exact_json_response(200, out)


@app.get("/v1/credits/availability")
@responds(200, AvailabilityOut)
def availability(
    feature: Annotated[str, Query(min_length=1, max_length=64)],
    model: Annotated[str | None, Query(min_length=3, max_length=128, pattern=r"^[\w.-]+/[\w.:-]+$")] = None,
    input_tokens: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    output_tokens: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    images: Annotated[int, Query(ge=0, le=100)] = 0,
    image_size: Annotated[str | None, Query(max_length=16, pattern=r"^\d{2,5}x\d{2,5}$")] = None,
    image_quality: Annotated[str | None, Query(pattern=r"^(standard|hd)$")] = None,
    org_id: OrgIdQuery = None,
) -> Response[str]:
    caller, _ = acting_for(current_caller(app), org_id, services.identity())
    provider, _, model_name = (model or "").partition("/")
    estimate = models.Usage(
        provider=provider or None,
        model=model_name or None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        images=images,
        image_size=image_size,
        image_quality=image_quality,
    )
    try:
        verdict = services.metering().availability(caller, feature, estimate)
    except pricing.UnknownFeature as exc:
        raise ValidationFailed([FieldError("feature", exc.detail, "unknown_feature")]) from None
    except pricing.UnknownPrice as exc:
        raise ValidationFailed([FieldError("model", exc.detail, "unknown_price")]) from None
    return exact_json_response(200, AvailabilityOut.of(feature, verdict))


@app.get("/v1/credits/alerts")
@responds(200, AlertListOut)
def alerts(limit: Annotated[int, Query(ge=1, le=100)] = 50, org_id: OrgIdQuery = None) -> Response[str]:
    _, org = acting_for(current_caller(app), org_id, services.identity())
    found = services.metering().alerts(org, limit=limit)
    return exact_json_response(200, AlertListOut(items=[AlertOut.of(a) for a in found]))


# -- purchases -----------------------------------------------------------------------------------


@app.post("/v1/credits/purchases", middlewares=[idempotent_route])
@responds(201, PurchaseOut)
def create_purchase(body: Annotated[PurchaseRequest, Body()]) -> Response[str]:
    caller, org = acting_for(current_caller(app), body.org_id, services.identity())
    require_purchaser(caller)
    package = load_packages().packages[body.package]  # the request model checked the name
    purchase = services.metering().create_purchase(
        org,
        derived_id(PURCHASE_ID_PREFIX, caller, "purchase", _idempotency_key()),
        package=package.name,
        credits=package.credits,
        bonus_credits=package.bonus_credits,
        price_micro_usd=package.price_micro_usd,
        created_by=caller.user,
    )
    location = {"Location": f"/v1/credits/purchases/{purchase.purchase_id}"}
    return exact_json_response(201, PurchaseOut.of(purchase), headers=location)


@app.get("/v1/credits/purchases/<purchase_id>")
@responds(200, PurchaseOut)
def get_purchase(purchase_id: str, org_id: OrgIdQuery = None) -> Response[str]:
    caller, org = acting_for(current_caller(app), org_id, services.identity())
    require_purchaser(caller)
    purchase = services.metering().purchase(org, check_purchase_id(purchase_id))
    return exact_json_response(200, PurchaseOut.of(purchase))


def _settle_purchase(
    transition: Transition, purchase_id: str, body: PurchaseTransitionRequest | None
) -> Response[str]:
    """The admin moves a purchase. Anyone else learns nothing about another org's purchase
    (404) and is refused on its own org's (403)."""
    caller = current_caller(app)
    if not caller.is_admin:
        services.metering().purchase(caller.org_id or "", check_purchase_id(purchase_id))
    require_admin(caller, "settle purchases")
    _, org = acting_for(caller, body.org_id if body else None, services.identity())
    metering = services.metering()
    external = body.external_reference if body else None
    purchase = transition_purchase(metering, transition, org, purchase_id, external)
    publish_recent_alerts(metering, services.alert_publisher(), org)
    return exact_json_response(200, PurchaseOut.of(purchase))


@app.post("/v1/credits/purchases/<purchase_id>/complete", middlewares=[idempotent_route])
@responds(200, PurchaseOut)
def complete_purchase(
    purchase_id: str, body: Annotated[PurchaseTransitionRequest | None, Body()] = None
) -> Response[str]:
    return _settle_purchase(Transition.COMPLETE, purchase_id, body)


@app.post("/v1/credits/purchases/<purchase_id>/fail", middlewares=[idempotent_route])
@responds(200, PurchaseOut)
def fail_purchase(
    purchase_id: str, body: Annotated[PurchaseTransitionRequest | None, Body()] = None
) -> Response[str]:
    return _settle_purchase(Transition.FAIL, purchase_id, body)


@app.post("/v1/credits/purchases/<purchase_id>/refund", middlewares=[idempotent_route])
@responds(200, PurchaseOut)
def refund_purchase(
    purchase_id: str, body: Annotated[PurchaseTransitionRequest | None, Body()] = None
) -> Response[str]:
    return _settle_purchase(Transition.REFUND, purchase_id, body)


@app.post("/v1/credits/webhooks/payments")
@responds(200, PaymentEventOut)
def payment_webhook() -> Response[str]:
    """A payment provider's event; no API key, authenticated by its ``Tollgate-Signature``.

    The signature is checked on the raw body before anything is parsed. Every delivery of
    one event has the same outcome: the purchase moves once, later deliveries see it moved."""
    event = app.current_event
    raw = (event.body or "").encode("utf-8")
    verify_signature(
        event.headers.get(SIGNATURE_HEADER),
        raw,
        services.webhook_secrets(),
        now=int(time.time()),
        tolerance_seconds=get_settings().webhook_tolerance_seconds,
    )
    payment = PaymentEvent.parse(raw.decode("utf-8"))
    metering = services.metering()
    transition = PAYMENT_EVENT_TRANSITIONS[payment.type]
    reference = payment.payment_reference or payment.id
    purchase = transition_purchase(metering, transition, payment.org_id, payment.purchase_id, reference)
    publish_recent_alerts(metering, services.alert_publisher(), payment.org_id)
    return exact_json_response(200, PaymentEventOut(event_id=payment.id, purchase=PurchaseOut.of(purchase)))


# -- grants --------------------------------------------------------------------------------------


@app.post("/v1/orgs/<org_id>/credits/grants", middlewares=[idempotent_route])
@responds(200, GrantOut)
@responds(201, GrantOut)
def grant(org_id: str, body: Annotated[GrantRequest, Body()]) -> Response[str]:
    caller = current_caller(app)
    org = services.identity().get_org(caller, org_id)  # another org's is 404
    require_admin(caller, "grant credits")
    result = services.metering().grant(
        org.org_id,
        body.amount,
        models.LotKind(body.kind),
        expires_at=body.expires_at,
        operation_id=operation_id(caller, f"grant-{org.org_id}", _idempotency_key()),
        note=body.note,
    )
    return exact_json_response(201 if result.created else 200, GrantOut.of(org.org_id, body, result))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_api_event(app, event, context)
