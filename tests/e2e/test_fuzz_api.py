"""Fuzzing every operation of the OpenAPI document against the local runtime (schemathesis).

Each operation gets valid and invalid requests generated from its schemas, sent with the owner
key of an org made for the fuzzing (the admin key for the admin's operations), and every
answer must: not be a 5xx, be documented (status, content type, body schema), refuse an
invalid body (4xx), and, when it is an error, be problem JSON. The document is the checked-in
one, which the runtime serves (tests/unit/test_openapi_document.py keeps them equal).

Bounded in time: ``MAX_EXAMPLES`` per operation, derandomized (the same requests every run),
no shrinking, no Hypothesis deadline. Providers are the mock models: nothing leaves 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import LocalRuntime, Tenant, bearer
from tollgate_local.openapi import DOCS_PATH

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_EXAMPLES = 12
FUZZ_CREDITS = 1_000

schema = schemathesis.openapi.from_path(DOCS_PATH)
schema.config.generation.update(max_examples=MAX_EXAMPLES, no_shrink=True, deterministic=True)

# Operations only the admin may call: fuzzed with the admin key, so they get past the role check.
ADMIN_OPERATIONS = {
    "create_org",
    "grant",
    "complete_purchase",
    "fail_purchase",
    "refund_purchase",
}
# Generated model names are never in the registry: a known mock model in their place lets valid
# requests reach generation (providers stay the mock ones, inside the runtime).
MOCK_MODELS = {"embeddings": "mock/embed", "images": "mock/image"}


def _with_mock_models(value: Any, model: str) -> Any:
    if isinstance(value, dict):
        return {
            name: model if name == "model" and isinstance(item, str) else _with_mock_models(item, model)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_with_mock_models(item, model) for item in value]
    return value


@schema.hook("map_case")
def _known_models(context: Any, case: Any) -> Any:
    parts = case.operation.path.strip("/").split("/")  # /v1/<resource>/...
    resource = parts[1] if len(parts) > 1 else parts[0]
    case.body = _with_mock_models(case.body, MOCK_MODELS.get(resource, "mock/chat"))
    return case


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def checks_for(case: Any) -> list[Any]:
    """``CHECKS``, and for a case whose only invalid part is its body, that it is refused (4xx):
    bodies are strict (S11), query strings lax by design (unknown parameters ignored, text
    read as the declared type), so a case with an invalid query, path or header is not held
    to it."""
    meta = case.meta
    invalid = {place for place, info in meta.components.items() if info.mode.is_negative} if meta else set()
    return [*CHECKS, negative_data_rejection] if invalid <= {ParameterLocation.BODY} else CHECKS


@pytest.fixture(scope="module")
def fuzz_tenant(make_tenant: Any, http: httpx.Client, runtime: LocalRuntime) -> Tenant:
    """An org of its own (the demo org is left alone), with credits to spend."""
    tenant: Tenant = make_tenant("Fuzz", plan="pro")
    granted = http.post(
        f"/v1/orgs/{tenant.org_id}/credits/grants",
        json={"amount": FUZZ_CREDITS, "kind": "promo", "note": "fuzzing"},
        headers=bearer(runtime.admin_key),
    )
    assert granted.status_code == 201, granted.text
    return tenant


def assert_problem_json(response: Any) -> None:
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/problem+json"), (response.status_code, content_type)
    body = response.json()
    assert body["status"] == response.status_code, body
    assert body["type"] == f"urn:tollgate:problem:{body['code']}", body
    assert body["title"], body


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_holds_under_generated_requests(
    case: Any, runtime: LocalRuntime, fuzz_tenant: Tenant
) -> None:
    # Given
    key = (
        runtime.admin_key
        if case.operation.definition.raw.get("operationId") in ADMIN_OPERATIONS
        else fuzz_tenant.owner_key
    )
    # When
    response = case.call_and_validate(
        base_url=runtime.base_url, headers=bearer(key), checks=checks_for(case), timeout=30
    )
    # Then
    assert_problem_json(response)
