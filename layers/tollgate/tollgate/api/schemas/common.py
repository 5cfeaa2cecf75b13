"""Pieces shared by the request/response models."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from tollgate.api.rest import Response
from tollgate.credits.amounts import exact_json

# Every request and response model defers building its validator to its first use: a function
# has many models and each request uses a couple (bench/cold_imports.py).


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)


@cache
def _aware_datetime() -> TypeAdapter[datetime]:
    return TypeAdapter(AwareDatetime)


def _from_iso(value: Any) -> Any:
    """An ISO string as the aware datetime it names (pydantic's own parsing, its error kept)."""
    if not isinstance(value, str):
        return value
    try:
        return _aware_datetime().validate_strings(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise PydanticCustomError(error["type"], "{reason}", {"reason": error["msg"]}) from None


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_from_iso)]
"""An aware datetime given as an ISO string, also in a body read with exact numbers (validated
strictly in Python mode, where a plain ``AwareDatetime`` refuses strings: ``RouteSpec.parse_body``)."""


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True, defer_build=True)


def exact_json_response(
    status: int, model: BaseModel, headers: Mapping[str, str] | None = None
) -> Response[str]:
    """A JSON answer whose ``Decimal`` amounts are written as exact JSON numbers."""
    return Response(
        status_code=status,
        content_type="application/json",
        body=exact_json(model.model_dump(mode="python")),
        headers=dict(headers or {}),
    )


class FieldErrorOut(BaseModel):
    """One invalid field of a refused request."""

    field: str
    message: str
    type: str


class ProblemOut(BaseModel):
    """RFC 9457 problem details: the body of every error (``application/problem+json``).
    Documents the shape ``tollgate.api.problems`` writes; some problems add members
    (``retry_after``, ``limit``, ...)."""

    model_config = ConfigDict(extra="allow", defer_build=True, title="Problem")

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None
    errors: list[FieldErrorOut] | None = None
