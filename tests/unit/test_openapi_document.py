"""The OpenAPI document is generated from the code and template.yaml, and the checked-in
copies (docs/ and the layer's data file that /v1/openapi.json serves) are that document."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from tollgate_local.gateway import ApiDefinition
from tollgate_local.openapi import DOCS_PATH, LAYER_PATH, build_document, render
from tollgate_local.template import Resolver, default_template, parameter_defaults


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def test_the_checked_in_documents_are_the_generated_one(document: dict[str, Any]) -> None:
    # Given
    generated = render(document)
    # Then: `make openapi` rewrites them
    assert DOCS_PATH.read_text("utf-8") == generated
    assert LAYER_PATH.read_text("utf-8") == generated


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)  # type: ignore[arg-type]


def test_every_template_route_is_an_operation_with_its_auth(document: dict[str, Any]) -> None:
    # Given
    template = default_template()
    routes = ApiDefinition.from_template(template, Resolver(refs=parameter_defaults(template))).routes
    paths = document["paths"]
    # Then
    assert sum(len(methods) for methods in paths.values()) == len(routes)
    for route in routes:
        operation = paths[route.path][route.method.lower()]
        assert (operation.get("security") == []) == (route.authorizer is None), route.path


def test_operations_document_bodies_answers_and_problems(document: dict[str, Any]) -> None:
    # Given
    create_org = document["paths"]["/v1/orgs"]["post"]
    # Then
    assert create_org["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateOrgRequest"
    }
    assert create_org["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrgOut"
    }
    problem = document["components"]["responses"]["Problem"]["content"]["application/problem+json"]
    assert problem["schema"] == {"$ref": "#/components/schemas/ProblemOut"}
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_query_parameters_carry_their_constraints(document: dict[str, Any]) -> None:
    # Given
    transactions = document["paths"]["/v1/credits/transactions"]["get"]
    limit = next(p for p in transactions["parameters"] if p["name"] == "limit")
    # Then
    assert limit["in"] == "query"
    assert limit["required"] is False
    assert limit["schema"] == {"default": 50, "maximum": 100, "minimum": 1, "type": "integer"}
