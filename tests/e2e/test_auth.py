"""Every refused key is a 401 problem JSON (code ``unauthorized``), through the template's
authorizer and gateway responses, over real HTTP.

The authorizer's answers are cached per Authorization header for the template's TTL (60 s),
as API Gateway does; so the revoked and the expired key are keys never presented before the
revocation or expiry (a key used just before would keep working until the TTL ends, which is
the documented revocation delay)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LocalRuntime, assert_problem, bearer
from tollgate.identity.keys import generate_key

pytestmark = pytest.mark.e2e


def test_no_authorization_header(http: httpx.Client) -> None:
    response = http.get("/v1/me")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer tg_short", "Bearer not-a-key-at-all", "Basic dXNlcjpwYXNz", "Bearer", "tg_AAAA"],
)
def test_malformed_keys(http: httpx.Client, authorization: str) -> None:
    assert_problem(http.get("/v1/me", headers={"Authorization": authorization}), 401, "unauthorized")


def test_a_key_with_a_bad_checksum(http: httpx.Client, runtime: LocalRuntime) -> None:
    # Given the demo key with its last (checksum) character changed
    last = runtime.demo_key[-1]
    tampered = runtime.demo_key[:-1] + ("A" if last != "A" else "B")
    # Then
    body = assert_problem(http.get("/v1/me", headers=bearer(tampered)), 401, "unauthorized")
    assert "checksum" in body["detail"]


def test_an_unknown_key(http: httpx.Client) -> None:
    body = assert_problem(http.get("/v1/me", headers=bearer(generate_key().value)), 401, "unauthorized")
    assert body["detail"] == "Unknown API key"


def test_a_revoked_key(http: httpx.Client, make_tenant: Any) -> None:
    # Given a member key, revoked by its org's owner before it was ever used
    tenant = make_tenant("Revokers")
    revoked = http.delete(f"/v1/keys/{tenant.member_key_id}", headers=bearer(tenant.owner_key))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"]
    # Then
    body = assert_problem(http.get("/v1/me", headers=bearer(tenant.member_key)), 401, "unauthorized")
    assert "revoked" in body["detail"]


def test_an_expired_key(http: httpx.Client, runtime: LocalRuntime) -> None:
    # Given a key that expires in two seconds
    expires = datetime.now(UTC) + timedelta(seconds=2)
    made = http.post(
        f"/v1/orgs/{runtime.demo_org_id}/keys",
        json={"name": "short-lived", "user": "temp", "role": "member", "expires_at": expires.isoformat()},
        headers=bearer(runtime.demo_key),
    )
    assert made.status_code == 201, made.text
    # When it has expired (never used before, so no cached authorization)
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)
    # Then
    body = assert_problem(http.get("/v1/me", headers=bearer(made.json()["key"])), 401, "unauthorized")
    assert "expired" in body["detail"]
