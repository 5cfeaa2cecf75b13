"""Organizations and keys over real HTTP: roles, tenancy (404, never 403, for another org's
ids), bad input answered with 4xx problem JSON, and ``Idempotency-Key`` on ``POST /v1/orgs``."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from boto3.dynamodb.types import TypeDeserializer

from tests.e2e.conftest import LocalRuntime, assert_problem, bearer

pytestmark = pytest.mark.e2e


def test_an_unknown_route_is_a_404_problem(http: httpx.Client, runtime: LocalRuntime) -> None:
    assert_problem(http.get("/v1/no-such-thing", headers=bearer(runtime.demo_key)), 404, "not_found")
    assert_problem(http.get("/nothing"), 404, "not_found")
    # a known path with a method it does not have
    assert_problem(http.put("/v1/me", headers=bearer(runtime.demo_key)), 404, "not_found")


def test_a_2mb_body_is_a_413_problem(http: httpx.Client, runtime: LocalRuntime) -> None:
    body = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = http.post(
        "/v1/orgs", content=body, headers={**bearer(runtime.admin_key), "Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


def test_a_body_over_api_gateways_10mb_is_a_413_problem(http: httpx.Client, runtime: LocalRuntime) -> None:
    response = http.post("/v1/orgs", content=b"x" * (10 * 1024 * 1024 + 1), headers=bearer(runtime.admin_key))
    assert_problem(response, 413, "payload_too_large")


def test_malformed_json_is_a_400_problem(http: httpx.Client, runtime: LocalRuntime) -> None:
    response = http.post(
        "/v1/orgs",
        content=b'{"name": "Broken",',
        headers={**bearer(runtime.admin_key), "Content-Type": "application/json"},
    )
    assert_problem(response, 400, "invalid_request")


def test_bad_unicode_is_a_4xx_problem(http: httpx.Client, runtime: LocalRuntime) -> None:
    response = http.post(
        "/v1/orgs",
        content=b'{"name": "\xff\xfe"}',
        headers={**bearer(runtime.admin_key), "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code, "invalid_request")


def test_wrong_types_and_unknown_fields_list_each_field(http: httpx.Client, runtime: LocalRuntime) -> None:
    response = http.post(
        "/v1/orgs", json={"name": 5, "plan": ["starter"], "colour": "red"}, headers=bearer(runtime.admin_key)
    )
    body = assert_problem(response, 422, "invalid_request")
    assert {"name", "plan", "colour"} <= {error["field"] for error in body["errors"]}


def test_an_unknown_plan_is_a_422_problem(http: httpx.Client, runtime: LocalRuntime) -> None:
    response = http.post(
        "/v1/orgs", json={"name": "Planless", "plan": "platinum"}, headers=bearer(runtime.admin_key)
    )
    body = assert_problem(response, 422, "invalid_request")
    assert [error["field"] for error in body["errors"]] == ["plan"]


def test_only_the_admin_creates_orgs(http: httpx.Client, runtime: LocalRuntime) -> None:
    response = http.post("/v1/orgs", json={"name": "Rogue", "plan": "free"}, headers=bearer(runtime.demo_key))
    assert_problem(response, 403, "forbidden")


def test_a_member_cannot_create_keys(http: httpx.Client, make_tenant: Any) -> None:
    tenant = make_tenant("Members")
    response = http.post(
        f"/v1/orgs/{tenant.org_id}/keys",
        json={"name": "escalation", "user": "member-1", "role": "owner"},
        headers=bearer(tenant.member_key),
    )
    assert_problem(response, 403, "forbidden")


def test_an_owner_can_create_keys_for_its_org(
    http: httpx.Client, make_tenant: Any, issued_keys: list[str]
) -> None:
    tenant = make_tenant("Owners")
    response = http.post(
        f"/v1/orgs/{tenant.org_id}/keys",
        json={"name": "ci", "user": "ci-bot", "role": "member"},
        headers=bearer(tenant.owner_key),
    )
    assert response.status_code == 201, response.text
    issued_keys.append(response.json()["key"])
    assert response.headers["Cache-Control"] == "no-store"
    listed = http.get("/v1/keys", headers=bearer(tenant.owner_key)).json()["items"]
    assert response.json()["key_id"] in {key["key_id"] for key in listed}
    assert all("key" not in key for key in listed)


def test_an_owner_of_org_a_gets_404_for_org_b_ids(http: httpx.Client, make_tenant: Any) -> None:
    # Given two tenants
    a = make_tenant("Tenant A")
    b = make_tenant("Tenant B")
    owner_a = bearer(a.owner_key)
    # Then every id of B is "not found" for A's owner, never "forbidden"
    assert_problem(http.get(f"/v1/orgs/{b.org_id}", headers=owner_a), 404, "not_found")
    created = http.post(
        f"/v1/orgs/{b.org_id}/keys", json={"name": "x", "user": "intruder", "role": "member"}, headers=owner_a
    )
    assert_problem(created, 404, "not_found")
    assert_problem(http.delete(f"/v1/keys/{b.member_key_id}", headers=owner_a), 404, "not_found")
    assert_problem(http.post(f"/v1/keys/{b.member_key_id}/rotate", headers=owner_a), 404, "not_found")
    assert_problem(http.get("/v1/keys", params={"org_id": b.org_id}, headers=owner_a), 404, "not_found")
    # and B's key still works
    assert http.get("/v1/me", headers=bearer(b.member_key)).status_code == 200


def _orgs_named(runtime: LocalRuntime, name: str) -> int:
    dynamodb = runtime.aws("dynamodb")
    deserialize = TypeDeserializer().deserialize
    count = 0
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                values = {key: deserialize(value) for key, value in item.items()}
                count += values.get("type") == "org" and values.get("name") == name
    return count


def test_the_same_idempotency_key_and_body_make_one_org(http: httpx.Client, runtime: LocalRuntime) -> None:
    # Given
    name = f"Once {uuid.uuid4().hex[:8]}"
    headers = {**bearer(runtime.admin_key), "Idempotency-Key": str(uuid.uuid4())}
    # When the same request is sent twice
    first = http.post("/v1/orgs", json={"name": name, "plan": "free"}, headers=headers)
    second = http.post("/v1/orgs", json={"plan": "free", "name": name}, headers=headers)
    # Then the second gets the first answer, and one org exists
    assert first.status_code == 201, first.text
    assert (second.status_code, second.json()) == (first.status_code, first.json())
    assert _orgs_named(runtime, name) == 1


def test_the_same_idempotency_key_with_another_body_is_a_409(
    http: httpx.Client, runtime: LocalRuntime
) -> None:
    headers = {**bearer(runtime.admin_key), "Idempotency-Key": str(uuid.uuid4())}
    first = http.post("/v1/orgs", json={"name": "First body", "plan": "free"}, headers=headers)
    assert first.status_code == 201, first.text
    second = http.post("/v1/orgs", json={"name": "Second body", "plan": "free"}, headers=headers)
    assert_problem(second, 409, "idempotency_conflict")
    assert _orgs_named(runtime, "Second body") == 0
