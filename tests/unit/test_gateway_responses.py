"""The answers API Gateway makes itself (unknown route, missing key, throttling, a function that
crashed or timed out) are problem JSON like Tollgate's own (S11): template.yaml gives each its
status, and the body says the same status."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tollgate_local.gateway import ApiDefinition, FunctionFailed, Gateway
from tollgate_local.template import Resolver, default_template, parameter_defaults, resources_of_type

PROBLEM_FIELDS = {"type", "title", "status", "code", "detail", "request_id"}


def _gateway_responses() -> dict[str, dict[str, Any]]:
    template = default_template()
    (api,) = resources_of_type(template, "AWS::Serverless::Api")
    responses: dict[str, dict[str, Any]] = template["Resources"][api]["Properties"]["GatewayResponses"]
    return responses


def _rendered(body_template: str) -> dict[str, Any]:
    """The body as API Gateway renders it: $context values are strings (messageString is
    already a quoted JSON string)."""
    text = body_template.replace("$context.error.messageString", '"Some message"')
    body: dict[str, Any] = json.loads(re.sub(r"\$context(?:\.[A-Za-z_]+)+", "value", text))
    return body


@pytest.mark.parametrize("response_type", sorted(_gateway_responses()))
def test_each_gateway_response_is_problem_json_with_its_own_status(response_type: str) -> None:
    spec = _gateway_responses()[response_type]
    assert spec["ResponseParameters"]["Headers"]["Content-Type"] == "'application/problem+json'"
    body = _rendered(spec["ResponseTemplates"]["application/json"])
    assert set(body) == PROBLEM_FIELDS
    assert body["status"] == spec["StatusCode"]
    assert body["type"] == f"urn:tollgate:problem:{body['code']}"


def test_the_fallbacks_and_a_timeout_are_configured() -> None:
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "INTEGRATION_TIMEOUT"} <= set(_gateway_responses())


def test_a_function_that_crashes_gets_a_retryable_problem_not_an_html_page() -> None:
    def crashing(function_id: str, event: dict[str, Any]) -> dict[str, Any]:
        raise FunctionFailed("Unhandled exception in the function")

    # Given the local gateway built from the real template, in front of a function that crashes
    template = default_template()
    api = ApiDefinition.from_template(template, Resolver(refs=parameter_defaults(template)))
    gateway = Gateway(api, crashing)
    # When a route without a key is called (GET /v1/health)
    response = gateway.handle("GET", "/v1/health", {}, {}, b"")
    # Then the answer is the template's 5xx problem, with the same status in the body
    assert response.status == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    body = json.loads(response.body)
    assert body["status"] == 503
    assert body["code"] == "service_unavailable"
