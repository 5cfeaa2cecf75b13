"""Usage analytics over HTTP against the local runtime (S9): the figures of ``/v1/usage`` are
the sums of the log entries the functions stored in the runtime's moto, and the daily
aggregates are there beside them."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LocalRuntime, Tenant, bearer

pytestmark = pytest.mark.e2e


def items(runtime: LocalRuntime, pk: str) -> list[dict[str, Any]]:
    table = runtime.aws("dynamodb").list_tables()["TableNames"][0]
    found = runtime.aws("dynamodb").query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
    )["Items"]
    return list(found)


def test_usage_adds_up_to_the_stored_log(http: httpx.Client, runtime: LocalRuntime, make_tenant: Any) -> None:
    # Given an org with credits, and a mix of requests: answered, cached, embedded, failed
    tenant: Tenant = make_tenant("Usage e2e")
    granted = http.post(
        f"/v1/orgs/{tenant.org_id}/credits/grants",
        json={"amount": 5, "kind": "grant", "note": "usage e2e"},
        headers={**bearer(runtime.admin_key), "Idempotency-Key": f"usage-e2e-{uuid.uuid4()}"},
    )
    assert granted.status_code == 201, granted.text
    chat = {"model": "mock/chat", "messages": [{"role": "user", "content": "usage e2e"}], "temperature": 0}
    statuses = [
        http.post("/v1/chat/completions", json=chat, headers=bearer(tenant.member_key)).status_code,
        http.post("/v1/chat/completions", json=chat, headers=bearer(tenant.owner_key)).status_code,
        http.post(
            "/v1/embeddings", json={"model": "mock/embed", "input": ["a"]}, headers=bearer(tenant.member_key)
        ).status_code,
        http.post(
            "/v1/chat/completions",
            json={
                **chat,
                "messages": [{"role": "user", "content": "fail"}],
                "metadata": {"mock": {"fail": "error"}},
            },
            headers=bearer(tenant.member_key),
        ).status_code,
    ]
    assert statuses == [200, 200, 200, 502]
    # When the owner asks for the usage by model
    response = http.get("/v1/usage?group_by=model", headers=bearer(tenant.owner_key))
    assert response.status_code == 200, response.text
    body = json.loads(response.text, parse_float=Decimal)
    # Then each model's figures are the sums of the log entries stored in moto
    day = datetime.now(UTC).date().isoformat()
    logged = items(runtime, f"ORG#{tenant.org_id}#LOG#{day}")
    assert len(logged) == 4
    requests = Counter(item["model"]["S"] for item in logged)
    credits: Counter[str] = Counter()
    for item in logged:
        credits[item["model"]["S"]] += int(item["credits"]["N"])
    assert {g["key"]: g["requests"] for g in body["groups"]} == dict(requests)
    assert {g["key"]: Decimal(g["credits"]) * 10_000 for g in body["groups"]} == dict(credits)
    assert body["total"]["cache_hits"] == 1
    assert body["total"]["provider_errors"] == 1
    # And the day's aggregates sit beside the log: one total item with the four requests
    (total,) = [i for i in items(runtime, f"ORG#{tenant.org_id}#AGG#total") if i["period"]["S"] == day]
    assert int(total["requests"]["N"]) == 4
    # And the member's own figures leave out the owner's request
    own = http.get("/v1/usage", headers=bearer(tenant.member_key)).json()
    assert (own["user"], own["total"]["requests"]) == ("member-1", 3)


def test_the_dashboard_page_is_served_without_a_key(http: httpx.Client) -> None:
    response = http.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-frame-options"] == "DENY"
