"""Bodies of the generation API that are Tollgate's own: the generation record (``/v1/generate``,
``/v1/requests``), ratings and the provider list. The OpenAI-compatible shapes live in
``tollgate.generation.requests`` and ``tollgate.generation.responses``.

Credits leave as exact JSON numbers (at most 4 decimals), provider cost in USD (at most 6),
written by ``exact_json_response``.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import Field

from tollgate.api.schemas.common import RequestModel, ResponseModel
from tollgate.credits.amounts import credits_of_units, usd_of_micro
from tollgate.errors import NotFound

if TYPE_CHECKING:  # annotations only: the records load with the generation service
    from tollgate.generation.records import GenerationRecord, RecordPage

if TYPE_CHECKING:
    from tollgate.providers.catalog import ProviderStatus

MAX_PAGE = 100
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def _exact(value: Any) -> Any:
    """Free-form record fields as ``exact_json`` writes them: a float (a temperature, a
    finding's score; never money) as the ``Decimal`` of its shortest repr."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: _exact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(item) for item in value]
    return value


def check_request_id(request_id: str) -> str:
    """A request id from a path: anything that cannot be one is simply not found."""
    if not _REQUEST_ID.match(request_id):
        raise NotFound(f"No request {request_id[:100]!r}")
    return request_id


class RatingRequest(RequestModel):
    score: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


class RatingOut(ResponseModel):
    score: int
    comment: str | None
    rated_at: datetime
    rated_by: str


class UsageOut(ResponseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class RequestOut(ResponseModel):
    """A generation request record (S6)."""

    id: str
    object: str = "generation.request"
    org_id: str
    user: str
    kind: str
    model: str
    requested_model: str
    provider: str
    feature: str
    status: str
    prompt: Any
    prompt_hash: str
    params: dict[str, Any]
    result: dict[str, Any] | None
    usage: UsageOut
    provider_cost_usd: Decimal
    credits_charged: Decimal
    latency_ms: int
    overhead_ms: int
    cached: bool
    error: dict[str, Any] | None
    findings: list[dict[str, Any]]
    fallbacks: list[dict[str, Any]]
    template_id: str | None
    template_version: int | None
    parent_id: str | None
    rating: RatingOut | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, record: GenerationRecord) -> RequestOut:
        return cls(
            id=record.request_id,
            org_id=record.org_id,
            user=record.user,
            kind=record.kind,
            model=record.model,
            requested_model=record.requested_model,
            provider=record.provider,
            feature=record.feature,
            status=record.status.value,
            prompt=_exact(record.prompt),
            prompt_hash=record.prompt_hash,
            params=_exact(record.params),
            result=_exact(record.result),
            usage=UsageOut(
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                total_tokens=record.input_tokens + record.output_tokens,
            ),
            provider_cost_usd=usd_of_micro(record.cost_micro_usd),
            credits_charged=credits_of_units(record.credits_charged),
            latency_ms=record.latency_ms,
            overhead_ms=record.overhead_ms,
            cached=record.cached,
            error=_exact(record.error),
            findings=_exact(list(record.findings)),
            fallbacks=_exact(list(record.fallbacks)),
            template_id=record.template_id,
            template_version=record.template_version,
            parent_id=record.parent_id,
            rating=RatingOut.model_validate(record.rating) if record.rating else None,
            created_at=record.created_at,
            completed_at=record.completed_at,
        )


class RequestPageOut(ResponseModel):
    object: str = "list"
    data: list[RequestOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: RecordPage) -> RequestPageOut:
        return cls(data=[RequestOut.of(record) for record in page.records], next_cursor=page.next_cursor)


class ProviderOut(ResponseModel):
    name: str
    configured: bool
    kinds: list[str]


class ProviderListOut(ResponseModel):
    object: str = "list"
    data: list[ProviderOut]

    @classmethod
    def of(cls, statuses: list[ProviderStatus]) -> ProviderListOut:
        return cls(
            data=[ProviderOut(name=s.name, configured=s.configured, kinds=list(s.kinds)) for s in statuses]
        )
