"""GET /v1/limits (S3) and how refusals reach HTTP: 429 with Retry-After and RateLimit-*,
402 insufficient_credits. Through the template's gateway and authorizer, moto in-process."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import Api, ApiResponse, Tenant, load_event
from tollgate import services
from tollgate.errors import InsufficientCredits, RateLimited
from tollgate.identity.models import Caller, Role
from tollgate.ids import new_id
from tollgate.metering.models import Usage
from tollgate.metering.service import MeteringService
from tollgate.plans import LimitSpec
from tollgate_local.invoke import in_process_invoker
from tollgate_local.template import default_template


def assert_problem(response: ApiResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.header("Content-Type") == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    return dict(body)


def org_caller(tenant: Tenant, plan: str) -> Caller:
    return Caller(key_id="key_test", user="member-1", role=Role.MEMBER, org_id=tenant.org_id, plan=plan)


def fund(api: Api, admin_key: str, org_id: str, credits: int) -> None:
    made = api.post(
        f"/v1/orgs/{org_id}/credits/grants", key=admin_key, json_body={"amount": credits, "note": "funds"}
    )
    assert made.status == 201, made.body


def exhaust_hourly_requests(tenant: Tenant, plan: str, allowed: int) -> RateLimited:
    """Reserve through the metering API until the plan's hourly request limit refuses; return
    the refusal."""
    caller = org_caller(tenant, plan)
    for _ in range(allowed):
        services.metering().reserve(caller, "color_analysis", Usage(), new_id("res"))
    with pytest.raises(RateLimited) as refused:
        services.metering().reserve(caller, "color_analysis", Usage(), new_id("res"))
    return refused.value


def test_a_member_sees_every_limit_with_max_used_and_reset(api: Api, make_tenant: Any) -> None:
    # Given a starter org (100 requests an hour, image limits)
    tenant: Tenant = make_tenant(plan="starter")
    # When a member asks
    response = api.get("/v1/limits", key=tenant.member_key)
    # Then it is allowed, and every limit is listed with its figures
    assert response.status == 200, response.body
    body = json.loads(response.body, parse_float=Decimal)
    assert body["allowed"] is True
    assert body["reason"] is None
    assert body["retry_after"] is None
    general = [lim for lim in body["limits"] if lim["kind"] is None]
    assert [(lim["metric"], lim["window"], lim["max"], lim["used"]) for lim in general] == [
        ("requests", "hour", 100, 0)
    ]
    cost = next(lim for lim in body["limits"] if lim["metric"] == "cost")
    assert (cost["unit"], cost["max"], cost["kind"]) == ("usd", 10, "image")
    assert all(lim["resets_at"].endswith("Z") for lim in body["limits"])
    # And the RateLimit headers describe the general request limit
    assert response.header("RateLimit-Limit") == "100"
    assert response.header("RateLimit-Remaining") == "100"
    assert 0 < int(response.header("RateLimit-Reset") or "0") <= 3600
    assert response.header("Retry-After") is None


def test_an_exhausted_free_org_is_told_why_and_when(api: Api, admin_key: str, make_tenant: Any) -> None:
    # Given a free org (10 requests an hour) with credits, whose 10 requests were reserved
    tenant: Tenant = make_tenant(plan="free")
    fund(api, admin_key, tenant.org_id, 100)
    refusal = exhaust_hourly_requests(tenant, "free", 10)
    # Then the metering refusal is a 429 carrying Retry-After and RateLimit-*
    assert refusal.status == 429
    assert refusal.headers["RateLimit-Limit"] == "10"
    assert refusal.headers["RateLimit-Remaining"] == "0"
    assert int(refusal.headers["Retry-After"]) > 0
    # When the member asks for its limits
    response = api.get("/v1/limits", key=tenant.member_key)
    # Then it is not allowed: rate limited, with the retry-after and the blocking limit
    assert response.status == 200, response.body
    body = response.json()
    assert (body["allowed"], body["reason"]) == (False, "rate_limited")
    assert body["blocking"]["max"] == body["blocking"]["used"] == 10
    assert abs(body["retry_after"] - int(refusal.headers["Retry-After"])) <= 2
    assert response.header("Retry-After") == str(body["retry_after"])
    assert response.header("RateLimit-Remaining") == "0"
    assert response.header("RateLimit-Limit") == "10"
    # And availability says the same for a feature
    availability = api.get("/v1/credits/availability?feature=color_analysis", key=tenant.member_key).json()
    assert (availability["allowed"], availability["reason"]) == (False, "rate_limited")
    assert availability["retry_after"] > 0


def test_an_org_override_is_listed_and_enforced(api: Api, admin_key: str, make_tenant: Any) -> None:
    # Given a starter org whose users may make 2 requests a day, 2 of them made
    tenant: Tenant = make_tenant(plan="starter")
    fund(api, admin_key, tenant.org_id, 10)
    services.metering().set_limit_overrides(
        tenant.org_id, [LimitSpec(scope="user", metric="requests", window="day", max=2)]
    )
    exhaust_hourly_requests(tenant, "starter", 2)
    # When the member asks
    body = api.get("/v1/limits", key=tenant.member_key).json()
    # Then the override is listed, used up, and blocks the caller
    user_limit = next(lim for lim in body["limits"] if lim["scope"] == "user")
    assert (user_limit["window"], user_limit["max"], user_limit["used"], user_limit["remaining"]) == (
        "day",
        2,
        2,
        0,
    )
    assert user_limit["subject"] == "member-1"
    assert (body["allowed"], body["reason"]) == (False, "rate_limited")


def test_cost_limits_are_shown_in_usd_with_exact_decimals(api: Api, admin_key: str, make_tenant: Any) -> None:
    # Given an image reserved at a provider cost of $0.04
    tenant: Tenant = make_tenant(plan="starter")
    fund(api, admin_key, tenant.org_id, 10)
    caller = org_caller(tenant, "starter")
    services.metering().reserve(caller, "image", Usage(images=1, cost_micro_usd=40_000), new_id("res"))
    # When the limits are read
    response = api.get("/v1/limits", key=tenant.member_key)
    # Then the daily image cost limit shows 0.04 of 10 USD, as exact JSON numbers
    cost = next(
        lim for lim in json.loads(response.body, parse_float=Decimal)["limits"] if lim["metric"] == "cost"
    )
    assert (cost["used"], cost["remaining"], cost["max"]) == (Decimal("0.04"), Decimal("9.96"), 10)
    assert b'"used":0.04' in response.body


def test_a_429_from_metering_reaches_http_with_its_headers(
    api: Api, admin_key: str, make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a real refusal from an exhausted free org
    tenant: Tenant = make_tenant(plan="free")
    fund(api, admin_key, tenant.org_id, 100)
    refusal = exhaust_hourly_requests(tenant, "free", 10)

    # When an endpoint's metering call raises it
    def refuse(*_: Any, **__: Any) -> Any:
        raise refusal

    monkeypatch.setattr(MeteringService, "availability", refuse)
    monkeypatch.setattr(MeteringService, "limits_status", refuse)
    for path in ("/v1/credits/availability?feature=chat", "/v1/limits"):
        response = api.get(path, key=tenant.member_key)
        # Then the HTTP answer is the 429 problem with every header and the limit that refused
        problem = assert_problem(response, 429, "rate_limited")
        for name in ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
            assert response.header(name) == refusal.headers[name], name
        assert problem["limit"]["max"] == 10


def test_a_402_from_metering_reaches_http(
    api: Api, make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a free org without credits, whose reservation is refused for want of credits
    tenant: Tenant = make_tenant(plan="free")
    with pytest.raises(InsufficientCredits) as refused:
        services.metering().reserve(org_caller(tenant, "free"), "color_analysis", Usage(), new_id("res"))

    def refuse(*_: Any, **__: Any) -> Any:
        raise refused.value

    monkeypatch.setattr(MeteringService, "availability", refuse)
    # When an endpoint's metering call raises it, Then it is 402 insufficient_credits
    response = api.get("/v1/credits/availability?feature=color_analysis", key=tenant.member_key)
    problem = assert_problem(response, 402, "insufficient_credits")
    assert problem["needed"] == 5_000


def test_limits_of_another_org_are_not_found_and_bad_input_is_4xx(
    api: Api, admin_key: str, make_tenant: Any
) -> None:
    a, b = make_tenant("A"), make_tenant("B")
    assert_problem(api.get(f"/v1/limits?org_id={b.org_id}", key=a.member_key), 404, "not_found")
    assert_problem(api.get("/v1/limits?org_id=x" + "y" * 60, key=a.member_key), 422, "invalid_request")
    assert_problem(api.get("/v1/limits", key=admin_key), 422, "invalid_request")
    # The admin names an org and sees that org's plan
    response = api.get(f"/v1/limits?org_id={a.org_id}", key=admin_key)
    assert response.status == 200
    assert response.json()["limits"]


def test_the_sample_event_is_answered(stack: Any) -> None:
    # When the template's UsageFunction handles events/usage.json
    result = in_process_invoker(default_template())("UsageFunction", load_event("usage"))
    # Then the sample caller's limits come back
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"])["allowed"] is True
