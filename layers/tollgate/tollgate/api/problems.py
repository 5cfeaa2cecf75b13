"""RFC 9457 problem details: the one shape of every error Tollgate answers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tollgate.api.rest import Response
from tollgate.errors import TollgateError

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_type(code: str) -> str:
    return f"urn:tollgate:problem:{code}"


def problem_body(
    *, status: int, code: str, title: str, detail: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra or {})
    return body


def problem_response(error: TollgateError, request_id: str | None = None) -> Response[str]:
    body = problem_body(
        status=error.status, code=error.code, title=error.title, detail=error.detail, extra=error.extra
    )
    if request_id:
        body["request_id"] = request_id
    return Response(
        status_code=error.status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        headers=error.headers,
    )


def problem_proxy_response(error: TollgateError, request_id: str) -> dict[str, Any]:
    """A problem as a complete API Gateway proxy response (for refusals before routing)."""
    body = problem_body(
        status=error.status, code=error.code, title=error.title, detail=error.detail, extra=error.extra
    )
    body["request_id"] = request_id
    headers: dict[str, list[str]] = {"Content-Type": [PROBLEM_CONTENT_TYPE], "X-Request-Id": [request_id]}
    for name, value in error.headers.items():
        headers[name] = [value]
    return {
        "statusCode": error.status,
        "multiValueHeaders": headers,
        "body": json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        "isBase64Encoded": False,
    }
