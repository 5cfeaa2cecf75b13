"""The resolver every API function uses, and the checks made before any route runs.

A function's handler is::

    app = build_resolver()
    ...routes...
    def lambda_handler(event, context):
        return handle_api_event(app, event, context)

``handle_api_event`` refuses what must be refused before parsing (oversized bodies, bodies
that are not UTF-8 JSON), runs the resolver, and stamps ``X-Request-Id`` on every answer.
Every ``TollgateError`` and every validation error becomes problem JSON in one place.

Routes declare their body and query parameters with ``tollgate.api.params.Body`` and
``Query``; ``TollgateResolver`` validates them before the route runs and turns a returned
pydantic model into a JSON answer.
"""

from __future__ import annotations

import base64
import binascii
import functools
import inspect
import json
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from tollgate.api.caller import caller_from_context
from tollgate.api.params import RouteSpec
from tollgate.api.problems import problem_proxy_response, problem_response
from tollgate.api.rest import APIGatewayRestResolver, Response
from tollgate.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TollgateError,
    UnsupportedMediaType,
)
from tollgate.identity.models import Caller
from tollgate.settings import get_settings

logger = Logger()
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


_ROUTE_SIGNATURE = inspect.signature(APIGatewayRestResolver.route)


class TollgateResolver(APIGatewayRestResolver):
    """A REST API resolver whose routes get their body and query validated (``RouteSpec``)
    and may return a pydantic model (answered as JSON, status 200)."""

    def __init__(self, *, decimal_numbers: bool = False) -> None:
        super().__init__(serializer=_compact_json)
        self.decimal_numbers = decimal_numbers
        self.operations: list[tuple[str, str, Callable[..., Any]]] = []
        self.middlewares: dict[tuple[str, str], tuple[Callable[..., Any], ...]] = {}
        self._specs: dict[tuple[str, str], RouteSpec] = {}

    def route(self, rule: str, method: Any, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        register = super().route(rule, method, *args, **kwargs)
        methods = (method,) if isinstance(method, str) else tuple(method)
        # Powertools' get/post/... pass everything positionally.
        bound = _ROUTE_SIGNATURE.bind(self, rule, method, *args, **kwargs)
        middlewares = tuple(bound.arguments.get("middlewares") or ())

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            for each in methods:
                self.operations.append((each.upper(), rule, func))
                self.middlewares[(each.upper(), rule)] = middlewares
            register(self._validating(methods[0], rule, func))
            return func

        return decorator

    def spec(self, method: str, rule: str, func: Callable[..., Any]) -> RouteSpec:
        """The route's spec, read from its signature the first time it is needed."""
        key = (method.upper(), rule)
        found = self._specs.get(key)
        if found is None:
            found = self._specs[key] = RouteSpec.of(method, rule, func)
        return found

    def _validating(self, method: str, rule: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def validated(**path_args: Any) -> Any:
            spec = self.spec(method, rule, func)
            event = self.current_event
            arguments = dict(path_args)
            if spec.query:
                arguments.update(
                    spec.parse_query(event.query_string_parameters, event.multi_value_query_string_parameters)
                )
            if spec.body_param is not None:
                arguments[spec.body_param] = spec.parse_body(
                    event.body, decimal_numbers=self.decimal_numbers or spec.body_exact_numbers
                )
            result = func(**arguments)
            if isinstance(result, BaseModel):
                return Response(
                    status_code=200, content_type="application/json", body=result.model_dump_json()
                )
            return result

        return validated


def build_resolver(*, decimal_numbers: bool = False) -> TollgateResolver:
    """A resolver with validated routes and every error answered as problem JSON.

    With ``decimal_numbers``, fractions in JSON bodies are read as ``Decimal``, never as
    ``float`` (money must stay exact). Off by default: free-form fields elsewhere (generation
    ``metadata``, template ``variables``) are re-serialised by ``json.dumps``, which refuses
    ``Decimal``."""
    app = TollgateResolver(decimal_numbers=decimal_numbers)

    @app.exception_handler(TollgateError)
    def _tollgate_error(exc: TollgateError) -> Response[str]:
        return problem_response(exc, request_id_of(app.current_event.raw_event))

    @app.exception_handler(Exception)
    def _aws_failure(exc: Exception) -> Response[str]:
        if not is_aws_failure(exc):
            raise exc
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


def is_aws_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is botocore's. botocore is loaded with the first AWS client
    (``tollgate.aws.clients``), never at cold start: before that, no error can be its."""
    errors = sys.modules.get("botocore.exceptions")
    return errors is not None and isinstance(exc, errors.ClientError | errors.BotoCoreError)


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
