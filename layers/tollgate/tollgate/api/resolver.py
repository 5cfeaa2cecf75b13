"""The resolver every API function uses, and the checks made before any route runs.

A function's handler is::

    app = build_resolver()
    ...routes...
    def lambda_handler(event, context):
        return handle_api_event(app, event, context)

``handle_api_event`` refuses what must be refused before parsing (oversized bodies, bodies
that are not UTF-8 JSON), runs the resolver, and stamps ``X-Request-Id`` on every answer.
Every ``TollgateError`` and every validation error becomes problem JSON in one place.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from functools import partial
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from tollgate.api.caller import caller_from_context
from tollgate.api.problems import problem_proxy_response, problem_response
from tollgate.errors import (
    FieldError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TollgateError,
    UnsupportedMediaType,
    ValidationFailed,
)
from tollgate.identity.models import Caller
from tollgate.settings import get_settings

logger = Logger()
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def field_errors(exc: RequestValidationError) -> list[FieldError]:
    """Pydantic's errors as one ``FieldError`` per field, without Python internals."""
    result = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body",)]
        field = ".".join(loc) or "body"
        kind = str(error.get("type", "invalid"))
        message = str(error.get("msg", "Invalid value"))
        if kind == "missing":
            message = "Field required"
        elif kind == "extra_forbidden":
            message = "Unknown field"
        result.append(FieldError(field=field, message=message, kind=kind))
    return result


def _validation_problem(exc: RequestValidationError, request_id: str) -> Response[str]:
    errors = field_errors(exc)
    if any(e.kind in ("json_invalid", "json_type") for e in errors):
        return problem_response(InvalidRequest("The request body is not valid JSON"), request_id)
    return problem_response(ValidationFailed(errors), request_id)


def build_resolver(*, decimal_numbers: bool = False) -> APIGatewayRestResolver:
    """A REST API resolver with validation on and every error answered as problem JSON.

    With ``decimal_numbers``, fractions in JSON bodies are read as ``Decimal``, never as
    ``float`` (money must stay exact). Off by default: free-form fields elsewhere (generation
    ``metadata``, template ``variables``) are re-serialised by ``json.dumps``, which refuses
    ``Decimal``."""
    app = APIGatewayRestResolver(
        enable_validation=True,
        serializer=_compact_json,
        json_body_deserializer=partial(json.loads, parse_float=Decimal) if decimal_numbers else None,
    )

    @app.exception_handler(TollgateError)
    def _tollgate_error(exc: TollgateError) -> Response[str]:
        return problem_response(exc, request_id_of(app.current_event.raw_event))

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[str]:
        return _validation_problem(exc, request_id_of(app.current_event.raw_event))

    @app.exception_handler([ClientError, BotoCoreError])
    def _aws_failure(exc: Exception) -> Response[str]:
        logger.exception("AWS call failed")
        return problem_response(
            ServiceUnavailable("A storage dependency failed; retry shortly", headers={"Retry-After": "1"}),
            request_id_of(app.current_event.raw_event),
        )

    @app.not_found
    def _not_found(exc: Exception) -> Response[str]:
        event = app.current_event
        return problem_response(
            NotFound(f"No route {event.http_method} {event.path}"), request_id_of(event.raw_event)
        )

    return app


def current_caller(app: APIGatewayRestResolver) -> Caller:
    """The authenticated caller of the request being handled."""
    authorizer = app.current_event.raw_event.get("requestContext", {}).get("authorizer")
    return caller_from_context(authorizer if isinstance(authorizer, Mapping) else None)


def request_id_of(event: Mapping[str, Any]) -> str:
    context = event.get("requestContext") or {}
    value = context.get("requestId") if isinstance(context, Mapping) else None
    return str(value) if value else str(uuid.uuid4())


def _header(event: Mapping[str, Any], name: str) -> str | None:
    headers = event.get("headers") or {}
    for key, value in headers.items():
        if key.lower() == name.lower():
            return str(value) if value is not None else None
    return None


def _precheck(event: dict[str, Any], max_body_bytes: int) -> None:
    """Refuse, before routing, a body that is too large, not UTF-8 or not declared as JSON."""
    body = event.get("body")
    if body is None or body == "":
        return
    if not isinstance(body, str):
        raise InvalidRequest("The request body must be text")
    raw: bytes
    if event.get("isBase64Encoded"):
        if len(body) * 3 // 4 > max_body_bytes:
            raise PayloadTooLarge(f"The request body exceeds {max_body_bytes} bytes")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("The request body is not valid base64") from None
    else:
        if len(body) > max_body_bytes:
            raise PayloadTooLarge(f"The request body exceeds {max_body_bytes} bytes")
        raw = body.encode("utf-8", errors="surrogatepass")
    if len(raw) > max_body_bytes:
        raise PayloadTooLarge(f"The request body exceeds {max_body_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8") from None
    method = str(event.get("httpMethod", "")).upper()
    content_type = (_header(event, "content-type") or "application/json").split(";")[0].strip().lower()
    if method in _BODY_METHODS and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType("Send the request body as application/json")
    event["body"] = text
    event["isBase64Encoded"] = False


def handle_api_event(
    app: APIGatewayRestResolver, event: dict[str, Any], context: LambdaContext
) -> dict[str, Any]:
    """Run one API Gateway (REST, proxy) event through ``app``, with the shared pre-checks."""
    request_id = request_id_of(event)
    logger.set_correlation_id(request_id)
    try:
        _precheck(event, get_settings().max_body_bytes)
        response = app.resolve(event, context)
    except TollgateError as exc:
        response = problem_proxy_response(exc, request_id)
    headers = response.setdefault("multiValueHeaders", {})
    headers["X-Request-Id"] = [request_id]
    return response


def json_response(status: int, model: BaseModel, headers: Mapping[str, str] | None = None) -> Response[str]:
    """A JSON answer with an explicit status (routes that create things answer 201)."""
    return Response(
        status_code=status,
        content_type="application/json",
        body=model.model_dump_json(),
        headers=dict(headers or {}),
    )
