"""Pieces shared by the request/response models."""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ConfigDict

from tollgate.credits.amounts import exact_json

# Every request and response model defers building its validator to its first use: a function
# has many models and each request uses a couple (bench/cold_imports.py).


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)


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
