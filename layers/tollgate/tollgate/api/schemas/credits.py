"""Bodies of the credits API: balance, transactions, availability, alerts, purchases, grants
and the payment webhook.

Amounts leave as JSON numbers with their exact digits: credits with at most 4 decimals, USD
with at most 6 (``Decimal`` fields, written by ``exact_json_response``). Amounts arrive the same
way: a credits amount is a JSON number with at most 4 decimals, read as a ``Decimal`` (never a
float) and turned into integer units.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, field_validator

from tollgate.api.schemas.common import IsoDatetime, RequestModel, ResponseModel
from tollgate.credits.amounts import credits_of_units, units_of_credits, usd_of_micro
from tollgate.credits.packages import load_packages
from tollgate.errors import FieldError, InvalidRequest, ValidationFailed

if TYPE_CHECKING:  # annotations only: the metering models load with the metering service
    from tollgate.metering.models import (
        Alert,
        Availability,
        Balance,
        GrantResult,
        LedgerEntry,
        LimitStatus,
        LotView,
        Purchase,
    )

MAX_GRANT_UNITS = 100_000_000_000  # 10,000,000 credits in one grant
MAX_PAGE = 100
OrgId = Annotated[str, Field(min_length=1, max_length=40)]


# -- amounts in ----------------------------------------------------------------------------------


def _strict_number(value: Any) -> Any:
    """A JSON number only: ``int`` or ``Decimal`` (the resolver reads fractions as ``Decimal``).
    Strings, booleans and floats (NaN, Infinity) are refused."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a JSON number")
    return value


def _to_units(value: int | Decimal) -> int:
    try:
        units = units_of_credits(value)
    except ValueError as exc:
        raise ValueError(f"credits {exc}") from None
    if units <= 0:
        raise ValueError("must be greater than 0")
    if units > MAX_GRANT_UNITS:
        raise ValueError(f"must be at most {credits_of_units(MAX_GRANT_UNITS)} credits")
    return units


CreditUnits = Annotated[int, BeforeValidator(_to_units), BeforeValidator(_strict_number)]
"""Credits given as a JSON number with at most 4 decimals, validated into integer units."""


def _known_package(name: str) -> str:
    if load_packages().get(name) is None:
        raise ValueError(f"Unknown package; one of: {', '.join(load_packages().names)}")
    return name


# -- requests ----------------------------------------------------------------------------------


class PurchaseRequest(RequestModel):
    """``POST /v1/credits/purchases``. The admin names the org; an org's owner buys for its own."""

    package: Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_known_package)]
    org_id: OrgId | None = None


class PurchaseTransitionRequest(RequestModel):
    """``POST /v1/credits/purchases/{id}/complete|fail|refund`` (admin)."""

    org_id: OrgId
    external_reference: str | None = Field(None, min_length=1, max_length=200)


class GrantRequest(RequestModel):
    """``POST /v1/orgs/{org_id}/credits/grants`` (admin)."""

    amount: CreditUnits = Field(description="Credits, a JSON number with at most 4 decimals")
    kind: Literal["grant", "promo"] = "grant"
    expires_at: IsoDatetime | None = None
    note: str = Field(min_length=1, max_length=500)

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


class PaymentEvent(RequestModel):
    """A payment provider's event, after its signature was verified.

    ``id`` is the provider's event id (the same on every delivery of one event); ``org_id``
    and ``purchase_id`` are the metadata Tollgate gave the provider for the checkout.
    """

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    type: Literal["payment.succeeded", "payment.failed", "payment.refunded"]
    org_id: OrgId
    purchase_id: str = Field(min_length=1, max_length=40)
    payment_reference: str | None = Field(None, min_length=1, max_length=200)
    created: int | None = Field(None, ge=0)

    @classmethod
    def parse(cls, body: str) -> PaymentEvent:
        """Parse and validate a raw body: ``InvalidRequest`` (400) if it is not JSON,
        ``ValidationFailed`` (422) naming each bad field otherwise."""
        try:
            data = json.loads(body, parse_float=Decimal)
        except ValueError:
            raise InvalidRequest("The request body is not valid JSON") from None
        try:
            return cls.model_validate(data, strict=True)  # as every body (RouteSpec.parse_body)
        except ValidationError as exc:
            raise ValidationFailed(validation_errors(exc)) from None


def validation_errors(exc: ValidationError) -> list[FieldError]:
    """Pydantic's errors as ``FieldError``s (one per field, no Python internals)."""
    errors = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ())) or "body"
        kind = str(error.get("type", "invalid"))
        message = {"missing": "Field required", "extra_forbidden": "Unknown field"}.get(
            kind, str(error.get("msg", "Invalid value"))
        )
        errors.append(FieldError(field=field, message=message, kind=kind))
    return errors


# -- cursors -------------------------------------------------------------------------------------


def encode_cursor(org_id: str, inner: str | None) -> str | None:
    """An opaque page cursor, bound to the org it pages through."""
    if inner is None:
        return None
    raw = json.dumps({"o": org_id, "c": inner}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(org_id: str, cursor: str | None) -> str | None:
    """The metering cursor inside ``cursor``; ``InvalidRequest`` (400) if it was not made by
    ``encode_cursor`` for this org."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error):
        raise InvalidRequest("Malformed cursor: pass back the next_cursor of the previous page") from None
    if not isinstance(data, dict) or data.get("o") != org_id or not isinstance(data.get("c"), str):
        raise InvalidRequest("Malformed cursor: pass back the next_cursor of the previous page")
    return str(data["c"])


# -- responses ----------------------------------------------------------------------------------


class LotOut(ResponseModel):
    lot_id: str
    kind: str
    priority: int
    remaining: Decimal
    held: Decimal
    original: Decimal
    expires_at: datetime | None
    created_at: datetime
    reference: str | None

    @classmethod
    def of(cls, lot: LotView) -> LotOut:
        return cls(
            lot_id=lot.lot_id,
            kind=lot.kind.value,
            priority=lot.priority,
            remaining=credits_of_units(lot.remaining),
            held=credits_of_units(lot.held),
            original=credits_of_units(lot.original),
            expires_at=lot.expires_at,
            created_at=lot.created_at,
            reference=lot.reference,
        )


class BalanceOut(ResponseModel):
    """Credits spendable now (``balance``), held by requests in flight (``held``), by lot in
    spending order."""

    org_id: str
    balance: Decimal
    held: Decimal
    last_topup: Decimal
    lots: list[LotOut]

    @classmethod
    def of(cls, balance: Balance) -> BalanceOut:
        return cls(
            org_id=balance.org_id,
            balance=credits_of_units(balance.balance),
            held=credits_of_units(balance.held),
            last_topup=credits_of_units(balance.last_topup),
            lots=[LotOut.of(lot) for lot in balance.lots],
        )


class LotMoveOut(ResponseModel):
    lot_id: str
    amount: Decimal


class TransactionOut(ResponseModel):
    """One ledger entry: ``amount`` is signed, ``balance_after`` is the balance it left."""

    sequence: int
    kind: str
    amount: Decimal
    balance_after: Decimal
    reference: str | None
    note: str | None
    at: datetime
    lots: list[LotMoveOut]

    @classmethod
    def of(cls, entry: LedgerEntry) -> TransactionOut:
        return cls(
            sequence=entry.sequence,
            kind=entry.kind.value,
            amount=credits_of_units(entry.amount),
            balance_after=credits_of_units(entry.balance_after),
            reference=entry.reference,
            note=entry.note,
            at=entry.at,
            lots=[LotMoveOut(lot_id=d.lot_id, amount=credits_of_units(d.amount)) for d in entry.lots],
        )


class TransactionPageOut(ResponseModel):
    items: list[TransactionOut]
    next_cursor: str | None


class AlertOut(ResponseModel):
    alert_id: str
    kind: str
    threshold: Decimal
    threshold_percent: int | None
    balance: Decimal
    at: datetime
    published: bool

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        return cls(
            alert_id=alert.alert_id,
            kind=alert.kind.value,
            threshold=credits_of_units(alert.threshold),
            threshold_percent=alert.threshold_percent,
            balance=credits_of_units(alert.balance),
            at=alert.at,
            published=alert.published,
        )


class AlertListOut(ResponseModel):
    items: list[AlertOut]


class PurchaseOut(ResponseModel):
    purchase_id: str
    org_id: str
    package: str
    status: str
    credits: Decimal
    bonus_credits: Decimal
    price_usd: Decimal
    refunded_credits: Decimal
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    external_reference: str | None

    @classmethod
    def of(cls, purchase: Purchase) -> PurchaseOut:
        return cls(
            purchase_id=purchase.purchase_id,
            org_id=purchase.org_id,
            package=purchase.package,
            status=purchase.status.value,
            credits=credits_of_units(purchase.credits),
            bonus_credits=credits_of_units(purchase.bonus_credits),
            price_usd=usd_of_micro(purchase.price_micro_usd),
            refunded_credits=credits_of_units(purchase.refunded_credits),
            created_at=purchase.created_at,
            updated_at=purchase.updated_at,
            created_by=purchase.created_by,
            external_reference=purchase.external_reference,
        )


class PaymentEventOut(ResponseModel):
    event_id: str
    purchase: PurchaseOut


class GrantOut(ResponseModel):
    """A grant's lot; ``created`` is false when this operation had already granted."""

    org_id: str
    lot_id: str
    created: bool
    kind: str
    amount: Decimal
    expires_at: datetime | None
    note: str
    transaction: TransactionOut | None

    @classmethod
    def of(cls, org_id: str, request: GrantRequest, result: GrantResult) -> GrantOut:
        return cls(
            org_id=org_id,
            lot_id=result.lot_id,
            created=result.created,
            kind=request.kind,
            amount=credits_of_units(request.amount),
            expires_at=request.expires_at,
            note=request.note,
            transaction=TransactionOut.of(result.entry) if result.entry else None,
        )


class LimitOut(ResponseModel):
    """One limit. ``unit`` says what ``max``, ``used`` and ``remaining`` count: requests,
    tokens, or USD (cost limits, shown with up to 6 decimals)."""

    scope: str
    subject: str
    metric: str
    unit: Literal["requests", "tokens", "usd"]
    window: str
    kind: str | None
    provider: str | None
    max: int | Decimal
    used: int | Decimal
    remaining: int | Decimal
    window_start: datetime
    resets_at: datetime

    @classmethod
    def of(cls, status: LimitStatus) -> LimitOut:
        unit: Literal["requests", "tokens", "usd"]
        unit = "usd" if status.metric == "cost_micro_usd" else status.metric

        def amount(value: int) -> int | Decimal:
            return usd_of_micro(value) if unit == "usd" else value

        return cls(
            scope=status.scope,
            subject=status.subject,
            metric="cost" if unit == "usd" else status.metric,
            unit=unit,
            window=status.window,
            kind=status.kind,
            provider=status.provider,
            max=amount(status.max),
            used=amount(status.used),
            remaining=amount(status.remaining),
            window_start=status.window_start,
            resets_at=status.resets_at,
        )


class AvailabilityOut(ResponseModel):
    """Would ``feature`` be allowed now: credits and limits together."""

    feature: str
    allowed: bool
    reason: str | None
    retry_after: int | None
    needed_credits: Decimal
    available_credits: Decimal
    blocking: LimitOut | None
    limits: list[LimitOut]

    @classmethod
    def of(cls, feature: str, availability: Availability) -> AvailabilityOut:
        return cls(
            feature=feature,
            allowed=availability.allowed,
            reason=availability.reason,
            retry_after=availability.retry_after,
            needed_credits=credits_of_units(availability.needed_credits),
            available_credits=credits_of_units(availability.available_credits),
            blocking=LimitOut.of(availability.blocking) if availability.blocking else None,
            limits=[LimitOut.of(s) for s in availability.limits],
        )
