"""The accounts API through the template's gateway and authorizer (moto in-process)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.conftest import Api, ApiResponse, Tenant
from tollgate_local.resources import REGION, CreatedStack


def assert_problem(response: ApiResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.header("Content-Type") == "application/problem+json"
    body = response.json()
    assert body["status"] == status if "status" in body else True
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["title"]
    assert body["detail"]
    return dict(body)


def test_no_plain_key_is_stored_anywhere(
    api: Api, stack: CreatedStack, make_tenant: Any, admin_key: str
) -> None:
    # Given an org with keys, one of them rotated
    tenant: Tenant = make_tenant()
    rotated = api.post(
        f"/v1/keys/{api.get('/v1/me', key=tenant.member_key).json()['key_id']}/rotate", key=tenant.owner_key
    )
    assert rotated.status == 201
    plain_keys = [admin_key, tenant.owner_key, tenant.member_key, rotated.json()["key"]]
    # When every item of every table, every parameter and every secret is read
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    stored = []
    for table in dynamodb.list_tables()["TableNames"]:
        stored.extend(json.dumps(item) for item in dynamodb.scan(TableName=table)["Items"])
    ssm = boto3.client("ssm", region_name=REGION)
    stored.extend(p["Value"] for p in ssm.get_parameters_by_path(Path="/", Recursive=True)["Parameters"])
    secrets = boto3.client("secretsmanager", region_name=REGION)
    for secret in secrets.list_secrets()["SecretList"]:
        stored.append(secrets.get_secret_value(SecretId=secret["ARN"])["SecretString"])
    # Then no plain key, nor its secret part, is in any of them
    assert len(stored) > 5
    for key in plain_keys:
        secret_part = key.split("_")[2]
        assert not any(key in text or secret_part in text for text in stored)


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        ("Bearer tg_AAAAAAAAAAAA_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000", "checksum"),
        ("Bearer sk-not-ours", "Malformed"),
        ("Token abc", "Bearer"),
    ],
)
def test_malformed_keys_get_401_problem_json(api: Api, authorization: str, detail: str) -> None:
    response = api.get("/v1/me", headers={"Authorization": authorization})
    body = assert_problem(response, 401, "unauthorized")
    assert detail in body["detail"]


def test_missing_key_gets_401_problem_json(api: Api) -> None:
    assert_problem(api.get("/v1/me"), 401, "unauthorized")


def test_unknown_revoked_and_expired_keys_get_401(api: Api, make_tenant: Any, admin_key: str) -> None:
    tenant: Tenant = make_tenant()
    # Unknown: a well-formed key that was never issued
    from tollgate.identity.keys import generate_key

    assert (
        "Unknown"
        in assert_problem(api.get("/v1/me", key=generate_key().value), 401, "unauthorized")["detail"]
    )
    # Revoked: a key revoked before it was ever used (nothing cached)
    made = api.post(
        f"/v1/orgs/{tenant.org_id}/keys", key=tenant.owner_key, json_body={"name": "r", "user": "r"}
    )
    revoked = api.delete(f"/v1/keys/{made.json()['key_id']}", key=tenant.owner_key)
    assert revoked.status == 200
    assert revoked.json()["revoked_at"]
    assert (
        "revoked" in assert_problem(api.get("/v1/me", key=made.json()["key"]), 401, "unauthorized")["detail"]
    )
    # Expired
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    expiring = api.post(
        f"/v1/orgs/{tenant.org_id}/keys",
        key=tenant.owner_key,
        json_body={"name": "e", "user": "e", "expires_at": soon},
    )
    assert expiring.status == 201
    import time

    time.sleep(1.2)
    assert (
        "expired"
        in assert_problem(api.get("/v1/me", key=expiring.json()["key"]), 401, "unauthorized")["detail"]
    )


def test_me_shows_the_caller_and_its_org(api: Api, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant(name="Acme", plan="starter")
    me = api.get("/v1/me", key=tenant.member_key).json()
    assert (me["role"], me["org_id"], me["plan"], me["org"]["name"]) == (
        "member",
        tenant.org_id,
        "starter",
        "Acme",
    )


def test_a_member_cannot_create_keys(api: Api, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    response = api.post(
        f"/v1/orgs/{tenant.org_id}/keys", key=tenant.member_key, json_body={"name": "x", "user": "x"}
    )
    assert_problem(response, 403, "forbidden")


def test_an_owner_cannot_create_orgs(api: Api, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    assert_problem(api.post("/v1/orgs", key=tenant.owner_key, json_body={"name": "x"}), 403, "forbidden")


def test_an_owner_of_org_a_gets_404_on_org_b_ids(api: Api, make_tenant: Any) -> None:
    # Given two orgs
    a: Tenant = make_tenant(name="A")
    b: Tenant = make_tenant(name="B")
    b_key_id = api.get("/v1/me", key=b.member_key).json()["key_id"]
    # When A's owner acts on B's org and key ids
    attempts = [
        api.get(f"/v1/orgs/{b.org_id}", key=a.owner_key),
        api.post(f"/v1/orgs/{b.org_id}/keys", key=a.owner_key, json_body={"name": "x", "user": "x"}),
        api.delete(f"/v1/keys/{b_key_id}", key=a.owner_key),
        api.post(f"/v1/keys/{b_key_id}/rotate", key=a.owner_key),
        api.get(f"/v1/keys?org_id={b.org_id}", key=a.owner_key),
    ]
    # Then every answer is 404, and B's key still works
    for response in attempts:
        assert_problem(response, 404, "not_found")
    assert api.get("/v1/me", key=b.member_key).status == 200


def test_keys_are_listed_per_org_with_hints_only(api: Api, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    listed = api.get("/v1/keys", key=tenant.owner_key)
    assert listed.status == 200
    items = listed.json()["items"]
    assert {k["role"] for k in items} == {"owner", "member"}
    assert all("key" not in k and k["hint"].startswith("tg_") for k in items)
    assert len(api.get("/v1/keys", key=tenant.member_key).json()["items"]) == 1


def test_rotation_replaces_the_key(api: Api, make_tenant: Any) -> None:
    # Given a member key never used yet (so the gateway has not cached its authorization)
    tenant: Tenant = make_tenant()
    items = api.get("/v1/keys", key=tenant.owner_key).json()["items"]
    key_id = next(k["key_id"] for k in items if k["role"] == "member")
    # When the owner rotates it with no grace period
    rotated = api.post(f"/v1/keys/{key_id}/rotate", key=tenant.owner_key, json_body={"grace_seconds": 0})
    # Then the new key works and the old one does not
    assert rotated.status == 201
    assert rotated.header("Cache-Control") == "no-store"
    assert api.get("/v1/me", key=rotated.json()["key"]).status == 200
    assert_problem(api.get("/v1/me", key=tenant.member_key), 401, "unauthorized")
    assert_problem(api.post(f"/v1/keys/{key_id}/rotate", key=tenant.owner_key), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"name": "x",', "application/json", 400, "invalid_request"),
        (b'{"name": 12, "plan": ["free"]}', "application/json", 422, "invalid_request"),
        (b'{"name": "x", "colour": "red"}', "application/json", 422, "invalid_request"),
        (b'{"name": "x", "plan": "platinum"}', "application/json", 422, "invalid_request"),
        (b'{"name": "x", "billing_anchor_day": 31}', "application/json", 422, "invalid_request"),
        (b"[1, 2, 3]", "application/json", 422, "invalid_request"),
        (b'\xff\xfe{"name": "x"}', "application/json", 400, "invalid_request"),
        (b"name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}', "application/json", 413, "payload_too_large"),
    ],
)
def test_bad_bodies_get_4xx_problem_json_and_create_nothing(
    api: Api, admin_key: str, body: bytes, content_type: str, status: int, code: str
) -> None:
    response = api.post("/v1/orgs", key=admin_key, body=body, headers={"Content-Type": content_type})
    problem = assert_problem(response, status, code)
    assert problem["request_id"] == response.header("X-Request-Id")
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for table in dynamodb.list_tables()["TableNames"]:
        assert not [i for i in dynamodb.scan(TableName=table)["Items"] if i["sk"]["S"] == "ORG"]


def test_validation_errors_name_each_field(api: Api, admin_key: str) -> None:
    response = api.post("/v1/orgs", key=admin_key, json_body={"name": 12, "plan": ["free"], "extra": 1})
    fields = {e["field"] for e in assert_problem(response, 422, "invalid_request")["errors"]}
    assert fields == {"name", "plan", "extra"}


def test_unknown_route_is_404_problem_json(api: Api, admin_key: str) -> None:
    assert_problem(api.get("/v1/nothing-here", key=admin_key), 404, "not_found")


def test_the_same_idempotency_key_makes_one_org(api: Api, admin_key: str) -> None:
    # Given a create request sent twice with one Idempotency-Key
    headers = {"Idempotency-Key": "create-acme-1"}
    first = api.post("/v1/orgs", key=admin_key, json_body={"name": "Acme", "plan": "free"}, headers=headers)
    second = api.post("/v1/orgs", key=admin_key, json_body={"plan": "free", "name": "Acme"}, headers=headers)
    # Then the second answer is the first one, replayed, and one org exists
    assert first.status == second.status == 201
    assert first.json() == second.json()
    assert second.header("Idempotent-Replayed") == "true"
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    orgs = [
        i
        for t in dynamodb.list_tables()["TableNames"]
        for i in dynamodb.scan(TableName=t)["Items"]
        if i["sk"]["S"] == "ORG"
    ]
    assert len(orgs) == 1
    # And a different body with the same key is refused
    third = api.post("/v1/orgs", key=admin_key, json_body={"name": "Other"}, headers=headers)
    assert_problem(third, 409, "idempotency_conflict")


def test_a_refused_request_does_not_burn_its_idempotency_key(api: Api, admin_key: str) -> None:
    # Given a request refused for an unknown plan
    headers = {"Idempotency-Key": "k-2"}
    refused = api.post("/v1/orgs", key=admin_key, json_body={"name": "A", "plan": "gold"}, headers=headers)
    assert refused.status == 422
    # When the client corrects it and retries with the same key
    corrected = api.post("/v1/orgs", key=admin_key, json_body={"name": "A", "plan": "free"}, headers=headers)
    # Then it runs (nothing was kept for the refusal), and its answer is kept from then on
    assert corrected.status == 201
    assert corrected.header("Idempotent-Replayed") is None
    replay = api.post("/v1/orgs", key=admin_key, json_body={"name": "A", "plan": "free"}, headers=headers)
    assert replay.json() == corrected.json()
    assert replay.header("Idempotent-Replayed") == "true"


def test_a_bad_idempotency_key_is_400(api: Api, admin_key: str) -> None:
    response = api.post(
        "/v1/orgs", key=admin_key, json_body={"name": "A"}, headers={"Idempotency-Key": "x" * 300}
    )
    assert_problem(response, 400, "invalid_request")


# -- PATCH /v1/orgs/{org_id} ---------------------------------------------------------------------


def fresh_member_key(api: Api, tenant: Tenant, user: str = "member-2") -> str:
    """A key the gateway's authorizer cache has not seen: it carries the org as it is now."""
    made = api.post(
        f"/v1/orgs/{tenant.org_id}/keys",
        key=tenant.owner_key,
        json_body={"name": "fresh", "user": user, "role": "member"},
    )
    assert made.status == 201, made.body
    return str(made.json()["key"])


def test_an_owner_sets_the_content_policy_and_generation_follows_it(
    api: Api, admin_key: str, make_tenant: Any
) -> None:
    # Given a funded org
    tenant: Tenant = make_tenant()
    granted = api.post(
        f"/v1/orgs/{tenant.org_id}/credits/grants", key=admin_key, json_body={"amount": 10, "note": "test"}
    )
    assert granted.status == 201, granted.body
    # When its owner blocks e-mail addresses and stops keeping prompts
    response = api.request(
        "PATCH",
        f"/v1/orgs/{tenant.org_id}",
        key=tenant.owner_key,
        json_body={"settings": {"content_policy": {"email": "block"}, "keep_prompts": False}},
    )
    # Then the org shows the whole policy (defaults filled in)
    assert response.status == 200, response.body
    settings = response.json()["settings"]
    assert settings["content_policy"]["email"] == "block"
    assert settings["content_policy"]["secret"] == "redact"
    assert settings["keep_prompts"] is False
    # And a request that carries an address is blocked, one that does not keeps no prompt
    key = fresh_member_key(api, tenant)
    chat = {"model": "mock/chat", "messages": [{"role": "user", "content": "Mail ann@example.com"}]}
    assert_problem(api.post("/v1/chat/completions", key=key, json_body=chat), 422, "content_blocked")
    ok = api.post(
        "/v1/chat/completions",
        key=key,
        json_body={"model": "mock/chat", "messages": [{"role": "user", "content": "Hello there"}]},
    )
    assert ok.status == 200, ok.body
    record = api.get(f"/v1/requests/{ok.header('X-Request-Id')}", key=key).json()
    assert record["prompt"] is None
    assert record["prompt_hash"]
    # And null puts a setting back to its default
    cleared = api.request(
        "PATCH",
        f"/v1/orgs/{tenant.org_id}",
        key=tenant.owner_key,
        json_body={"settings": {"keep_prompts": None}},
    )
    assert "keep_prompts" not in cleared.json()["settings"]
    assert cleared.json()["settings"]["content_policy"]["email"] == "block"


def test_only_the_admin_changes_plans_and_limits_and_they_apply(
    api: Api, admin_key: str, make_tenant: Any
) -> None:
    tenant: Tenant = make_tenant(plan="starter")
    url = f"/v1/orgs/{tenant.org_id}"
    override = {"scope": "org", "metric": "requests", "window": "hour", "max": 7}
    # An owner may rename, not change the plan or the limits; a member may not change anything
    assert api.request("PATCH", url, key=tenant.owner_key, json_body={"name": "Renamed"}).status == 200
    assert_problem(
        api.request("PATCH", url, key=tenant.owner_key, json_body={"plan": "pro"}), 403, "forbidden"
    )
    assert_problem(
        api.request("PATCH", url, key=tenant.owner_key, json_body={"limit_overrides": [override]}),
        403,
        "forbidden",
    )
    assert_problem(
        api.request("PATCH", url, key=tenant.member_key, json_body={"name": "Mine"}), 403, "forbidden"
    )
    # The admin changes both
    changed = api.request(
        "PATCH", url, key=admin_key, json_body={"plan": "pro", "limit_overrides": [override]}
    )
    assert changed.status == 200, changed.body
    assert (changed.json()["plan"], changed.json()["name"]) == ("pro", "Renamed")
    # And a caller authorized after the change is limited by them
    limits = api.get("/v1/limits", key=fresh_member_key(api, tenant)).json()["limits"]
    hourly = [
        lim
        for lim in limits
        if (lim["scope"], lim["metric"], lim["window"], lim["kind"]) == ("org", "requests", "hour", None)
    ]
    assert [lim["max"] for lim in hourly] == [7]


def test_another_orgs_owner_gets_404_and_bad_settings_are_422_by_field(
    api: Api, admin_key: str, make_tenant: Any
) -> None:
    tenant: Tenant = make_tenant()
    other: Tenant = make_tenant("Other")
    url = f"/v1/orgs/{tenant.org_id}"
    assert_problem(
        api.request("PATCH", url, key=other.owner_key, json_body={"name": "Mine"}), 404, "not_found"
    )
    bad_policy = api.request(
        "PATCH", url, key=tenant.owner_key, json_body={"settings": {"content_policy": {"email": "shred"}}}
    )
    body = assert_problem(bad_policy, 422, "invalid_request")
    assert [error["field"] for error in body["errors"]] == ["settings.content_policy.email"]
    twice = {"scope": "org", "metric": "requests", "window": "hour", "max": 1}
    duplicate = api.request("PATCH", url, key=admin_key, json_body={"limit_overrides": [twice, twice]})
    assert [e["field"] for e in assert_problem(duplicate, 422, "invalid_request")["errors"]] == [
        "limit_overrides"
    ]
    # Wrong JSON types inside them are refused as in any body, each field named
    coerced = api.request(
        "PATCH",
        url,
        key=tenant.owner_key,
        json_body={"settings": {"content_policy": {"injection_threshold": True, "injection_roles": "user"}}},
    )
    assert sorted(e["field"] for e in assert_problem(coerced, 422, "invalid_request")["errors"]) == [
        "settings.content_policy.injection_roles",
        "settings.content_policy.injection_threshold",
    ]
    stringly = {"scope": "org", "metric": "requests", "window": "hour", "max": "7"}
    refused = api.request("PATCH", url, key=admin_key, json_body={"limit_overrides": [twice, stringly]})
    assert [e["field"] for e in assert_problem(refused, 422, "invalid_request")["errors"]] == [
        "limit_overrides.1.max"
    ]
    unknown = api.request("PATCH", url, key=admin_key, json_body={"plan": "platinum"})
    assert [e["field"] for e in assert_problem(unknown, 422, "invalid_request")["errors"]] == ["plan"]
    stranger = api.request("PATCH", url, key=tenant.owner_key, json_body={"settings": {"colour": "red"}})
    assert [e["field"] for e in assert_problem(stranger, 422, "invalid_request")["errors"]] == [
        "settings.colour"
    ]
    # Nothing of that was stored
    assert api.get(url, key=tenant.owner_key).json()["settings"] == {}
