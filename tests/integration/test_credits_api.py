"""The credits API (S4) through the template's gateway and authorizer, on moto in-process.

Every test that moves money ends by checking the ledger: the sum of the entries equals the
balance, and each entry's ``balance_after`` is the running sum.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from tests.conftest import Api, ApiResponse, Tenant, alerts_to_queue, drain_queue, load_event
from tollgate import services
from tollgate.credits.amounts import exact_json
from tollgate.credits.webhooks import signature_header
from tollgate.identity.models import Caller, Role
from tollgate.ids import new_id
from tollgate.metering.models import Usage
from tollgate_local.invoke import in_process_invoker
from tollgate_local.resources import REGION, CreatedStack
from tollgate_local.template import default_template

# -- helpers -------------------------------------------------------------------------------------


def decimal_json(response: ApiResponse) -> Any:
    """The body with every fraction as a Decimal: amounts are compared exactly."""
    return json.loads(response.body, parse_float=Decimal)


def assert_problem(response: ApiResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.header("Content-Type") == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["detail"]
    return dict(body)


def balance_of(api: Api, admin_key: str, org_id: str) -> Decimal:
    response = api.get(f"/v1/credits/balance?org_id={org_id}", key=admin_key)
    assert response.status == 200, response.body
    return Decimal(decimal_json(response)["balance"])


def assert_ledger_matches_balance(api: Api, admin_key: str, org_id: str) -> list[dict[str, Any]]:
    """Page through every transaction: the sum equals the balance, and the chain of
    ``balance_after`` is the running sum. Returns the entries, oldest first."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        url = f"/v1/credits/transactions?org_id={org_id}&limit=7" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(url, key=admin_key)
        assert page.status == 200, page.body
        body = decimal_json(page)
        entries.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    entries.sort(key=lambda e: e["sequence"])
    running = Decimal(0)
    for entry in entries:
        running += Decimal(entry["amount"])
        assert Decimal(entry["balance_after"]) == running, entry
    assert running == balance_of(api, admin_key, org_id)
    return entries


def post_exact(
    api: Api, url: str, key: str, payload: Any, headers: dict[str, str] | None = None
) -> ApiResponse:
    """POST a body whose Decimal amounts are written as exact JSON numbers."""
    return api.request(
        "POST",
        url,
        key=key,
        body=exact_json(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def grant(
    api: Api, admin_key: str, org_id: str, amount: Any, *, key: str | None = None, kind: str = "grant"
) -> ApiResponse:
    headers = {"Idempotency-Key": key} if key else None
    payload = {"amount": amount, "kind": kind, "note": "test grant"}
    return post_exact(api, f"/v1/orgs/{org_id}/credits/grants", admin_key, payload, headers)


def spend(org_id: str, credits_units: int, plan: str = "starter") -> None:
    """Spend exactly ``credits_units`` through the metering API (reserve then settle), as a
    feature would: chat is cost-plus x1.5, so a provider cost of 2/3 of the units does it."""
    assert credits_units % 3 == 0
    caller = Caller(key_id="key_test", user="owner-1", role=Role.OWNER, org_id=org_id, plan=plan)
    usage = Usage(cost_micro_usd=credits_units * 2 // 3)
    reservation = services.metering().reserve(caller, "chat", usage, new_id("res"))
    services.metering().settle(org_id, reservation.reservation_id, usage)


def webhook_secret(stack: CreatedStack) -> bytes:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    return str(
        secrets.get_secret_value(SecretId=stack.names["PaymentWebhookSecret"])["SecretString"]
    ).encode()


def send_webhook(
    api: Api, secret: bytes, event: dict[str, Any], *, at: int | None = None, header: str | None = None
) -> ApiResponse:
    body = json.dumps(event).encode()
    signature = header if header is not None else signature_header(secret, at or int(time.time()), body)
    return api.request(
        "POST",
        "/v1/credits/webhooks/payments",
        body=body,
        headers={"Content-Type": "application/json", "Tollgate-Signature": signature},
    )


def create_purchase(api: Api, tenant: Tenant, package: str = "growth_pack") -> dict[str, Any]:
    response = api.post("/v1/credits/purchases", key=tenant.owner_key, json_body={"package": package})
    assert response.status == 201, response.body
    return dict(decimal_json(response))


# -- balance, transactions, tenancy ----------------------------------------------------------------


def test_members_read_their_orgs_balance_and_transactions(api: Api, admin_key: str, make_tenant: Any) -> None:
    # Given an org with 12.3456 credits granted
    tenant: Tenant = make_tenant()
    assert grant(api, admin_key, tenant.org_id, Decimal("12.3456")).status == 201
    # When a member reads the balance and the transactions
    balance = api.get("/v1/credits/balance", key=tenant.member_key)
    transactions = api.get("/v1/credits/transactions", key=tenant.member_key)
    # Then the amounts are exact JSON numbers with 4 decimals
    assert balance.status == 200, balance.body
    assert b'"balance":12.3456' in balance.body
    assert decimal_json(balance)["lots"][0]["kind"] == "grant"
    assert transactions.status == 200
    (entry,) = decimal_json(transactions)["items"]
    assert entry["kind"] == "grant"
    assert entry["amount"] == Decimal("12.3456")
    assert_ledger_matches_balance(api, admin_key, tenant.org_id)


def test_transactions_page_with_an_opaque_cursor(api: Api, admin_key: str, make_tenant: Any) -> None:
    # Given five grants
    tenant: Tenant = make_tenant()
    for amount in (1, 2, 3, 4, 5):
        assert grant(api, admin_key, tenant.org_id, amount).status == 201
    # When they are read two at a time
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        url = "/v1/credits/transactions?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(url, key=tenant.member_key)
        assert page.status == 200, page.body
        body = page.json()
        assert len(body["items"]) <= 2
        seen.extend(item["sequence"] for item in body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # Then every entry comes once, newest first
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) == 5
    assert pages == 3
    assert_ledger_matches_balance(api, admin_key, tenant.org_id)


BAD_PAGING = [
    ("cursor=!!!", 400),
    ("cursor=bm90LWpzb24", 400),  # base64 of "not-json"
    ("cursor=eyJvIjoib3JnX3giLCJjIjoieCJ9", 400),  # a cursor of another org
    ("cursor=eyJ4IjoxfQ", 400),  # {"x":1}
    ("limit=0", 422),
    ("limit=101", 422),
    ("limit=ten", 422),
    ("limit=1.5", 422),
]


def test_bad_paging_input_is_a_problem(api: Api, make_tenant: Any) -> None:
    # Given an org, When it pages with a bad cursor or limit, Then each is a 4xx problem
    tenant: Tenant = make_tenant()
    for query, status in BAD_PAGING:
        response = api.get(f"/v1/credits/transactions?{query}", key=tenant.member_key)
        assert_problem(response, status, "invalid_request")


def test_a_cursor_cannot_read_another_orgs_ledger(api: Api, admin_key: str, make_tenant: Any) -> None:
    # Given org A with enough entries for two pages, and a cursor into its ledger
    a, b = make_tenant("A"), make_tenant("B")
    for amount in (1, 2, 3):
        grant(api, admin_key, a.org_id, amount)
    cursor = api.get("/v1/credits/transactions?limit=1", key=a.member_key).json()["next_cursor"]
    assert cursor
    # When org B pages with it
    response = api.get(f"/v1/credits/transactions?limit=1&cursor={cursor}", key=b.member_key)
    # Then it is refused, and B sees nothing of A
    assert_problem(response, 400, "invalid_request")


ORG_READS = ["/v1/credits/balance", "/v1/credits/transactions", "/v1/credits/alerts", "/v1/limits"]


def test_another_orgs_credits_are_not_found(api: Api, make_tenant: Any) -> None:
    # Given two orgs
    a, b = make_tenant("A"), make_tenant("B")
    for path in ORG_READS:
        # When A's owner names B, or an id that is not one
        for org_id in (b.org_id, "org_nope", "../x"):
            response = api.get(f"{path}?org_id={org_id}", key=a.owner_key)
            # Then it is 404, as if B did not exist
            assert_problem(response, 404, "not_found")
        # And naming its own org works
        assert api.get(f"{path}?org_id={a.org_id}", key=a.member_key).status == 200


def test_the_admin_must_name_an_org(api: Api, admin_key: str) -> None:
    for path in ORG_READS:
        body = assert_problem(api.get(path, key=admin_key), 422, "invalid_request")
        assert body["errors"][0]["field"].endswith("org_id")


# -- grants ------------------------------------------------------------------------------------------


def test_a_replayed_grant_returns_the_first_answer_and_moves_money_once(
    api: Api, admin_key: str, make_tenant: Any
) -> None:
    # Given a grant made with an Idempotency-Key
    tenant: Tenant = make_tenant()
    first = grant(api, admin_key, tenant.org_id, Decimal("25.5"), key="grant-2025-001", kind="promo")
    assert first.status == 201, first.body
    # When the same request is sent again, twice
    replays = [grant(api, admin_key, tenant.org_id, Decimal("25.5"), key="grant-2025-001", kind="promo")]
    replays.append(grant(api, admin_key, tenant.org_id, Decimal("25.5"), key="grant-2025-001", kind="promo"))
    # Then each gets the first answer, status and body, and the money moved once
    for replay in replays:
        assert replay.status == 201
        assert replay.body == first.body
        assert replay.header("Idempotent-Replayed") == "true"
    assert balance_of(api, admin_key, tenant.org_id) == Decimal("25.5")
    entries = assert_ledger_matches_balance(api, admin_key, tenant.org_id)
    assert len(entries) == 1
    # And the same key with another amount is a conflict that moves nothing
    conflict = grant(api, admin_key, tenant.org_id, 99, key="grant-2025-001", kind="promo")
    assert_problem(conflict, 409, "idempotency_conflict")
    assert balance_of(api, admin_key, tenant.org_id) == Decimal("25.5")


def test_the_ledger_acts_once_even_when_the_http_record_is_gone(
    api: Api, admin_key: str, make_tenant: Any, stack: CreatedStack
) -> None:
    # Given a grant made with an Idempotency-Key
    tenant: Tenant = make_tenant()
    assert grant(api, admin_key, tenant.org_id, 7, key="op-7").status == 201
    # When its HTTP idempotency record disappears (a crash before it was completed) and it is retried
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    table = stack.names["TollgateTable"]
    for item in dynamodb.scan(TableName=table)["Items"]:
        if item["pk"]["S"].startswith("IDEMP#"):
            dynamodb.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
    retry = grant(api, admin_key, tenant.org_id, 7, key="op-7")
    # Then the ledger's own operation id still grants once
    assert retry.status == 200, retry.body
    assert retry.json()["created"] is False
    assert balance_of(api, admin_key, tenant.org_id) == 7
    assert_ledger_matches_balance(api, admin_key, tenant.org_id)


def test_grant_rights_admin_only_and_other_orgs_not_found(api: Api, admin_key: str, make_tenant: Any) -> None:
    a, b = make_tenant("A"), make_tenant("B")
    # An owner or member of the org is refused (403): they know their own org exists
    assert_problem(grant(api, a.owner_key, a.org_id, 5), 403, "forbidden")
    assert_problem(grant(api, a.member_key, a.org_id, 5), 403, "forbidden")
    # Another org is not found (404); so is an id that is not one
    assert_problem(grant(api, a.owner_key, b.org_id, 5), 404, "not_found")
    assert_problem(grant(api, admin_key, "org_00000000000000000000000000", 5), 404, "not_found")
    assert_problem(grant(api, admin_key, "not-an-id", 5), 404, "not_found")
    # And nothing moved
    assert balance_of(api, admin_key, a.org_id) == 0
    assert balance_of(api, admin_key, b.org_id) == 0


BAD_GRANTS: list[tuple[dict[str, Any], str]] = [
    ({"amount": "10", "note": "n"}, "amount"),  # a string is not a number
    ({"amount": True, "note": "n"}, "amount"),
    ({"amount": 1.00001, "note": "n"}, "amount"),  # finer than 1/10,000 credit
    ({"amount": 0, "note": "n"}, "amount"),
    ({"amount": -5, "note": "n"}, "amount"),
    ({"amount": 10_000_001, "note": "n"}, "amount"),
    ({"amount": None, "note": "n"}, "amount"),
    ({"note": "n"}, "amount"),
    ({"amount": 5}, "note"),
    ({"amount": 5, "note": ""}, "note"),
    ({"amount": 5, "note": "n", "kind": "purchased"}, "kind"),
    ({"amount": 5, "note": "n", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"amount": 5, "note": "n", "expires_at": "2099-01-01T00:00:00"}, "expires_at"),  # no zone
    ({"amount": 5, "note": "n", "expires_at": "soon"}, "expires_at"),
    ({"amount": 5, "note": "n", "expires_at": 4_070_908_800}, "expires_at"),  # a number, not ISO
    ({"amount": "5", "note": "n"}, "amount"),
    ({"amount": 5, "note": True}, "note"),
    ({"amount": 5, "note": "n", "bonus": 1}, "bonus"),  # unknown field
]


def test_bad_grants_are_422_naming_the_field(api: Api, admin_key: str, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    for body, field in BAD_GRANTS:
        # When the admin sends an ill-typed, out-of-range, missing or unknown field
        response = api.post(f"/v1/orgs/{tenant.org_id}/credits/grants", key=admin_key, json_body=body)
        # Then it is a 422 naming that field
        problem = assert_problem(response, 422, "invalid_request")
        assert any(error["field"].endswith(field) for error in problem["errors"]), (body, problem)
    # And nothing moved
    assert balance_of(api, admin_key, tenant.org_id) == 0


MALFORMED_GRANT_BODIES = [
    (b'{"amount": 5, "note": ', "application/json", 400),
    (b'{"amount": NaN, "note": "n"}', "application/json", 422),
    (b'{"amount": Infinity, "note": "n"}', "application/json", 422),
    (b"[1, 2]", "application/json", 422),
    (b'"text"', "application/json", 422),
    (b"\xff\xfe", "application/json", 400),
    (b"amount=5", "application/x-www-form-urlencoded", 415),
]


def test_malformed_grant_bodies_are_4xx_problems(api: Api, admin_key: str, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    for raw, content_type, status in MALFORMED_GRANT_BODIES:
        response = api.request(
            "POST",
            f"/v1/orgs/{tenant.org_id}/credits/grants",
            key=admin_key,
            body=raw,
            headers={"Content-Type": content_type},
        )
        assert 400 <= response.status < 500
        assert response.status == status, response.body
        assert response.header("Content-Type") == "application/problem+json"


def test_a_grant_may_expire_and_keeps_exact_decimals(api: Api, admin_key: str, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    response = post_exact(
        api,
        f"/v1/orgs/{tenant.org_id}/credits/grants",
        admin_key,
        {
            "amount": Decimal("0.0001"),
            "kind": "promo",
            "note": "welcome",
            "expires_at": expires.isoformat(),
        },
    )
    assert response.status == 201, response.body
    body = decimal_json(response)
    assert body["amount"] == Decimal("0.0001")
    assert b'"amount":0.0001' in response.body
    assert body["expires_at"] == expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert_ledger_matches_balance(api, admin_key, tenant.org_id)


# -- purchases -----------------------------------------------------------------------------------


def test_an_owner_buys_a_package_with_bonus_and_the_admin_completes_it(
    api: Api, admin_key: str, make_tenant: Any
) -> None:
    # Given an owner's pending purchase of the growth pack ($50, 5,000 credits + 250 bonus)
    tenant: Tenant = make_tenant()
    purchase = create_purchase(api, tenant, "growth_pack")
    assert purchase["status"] == "pending"
    assert (purchase["credits"], purchase["bonus_credits"], purchase["price_usd"]) == (5000, 250, 50)
    assert balance_of(api, admin_key, tenant.org_id) == 0
    # When the admin completes it
    done = api.post(
        f"/v1/credits/purchases/{purchase['purchase_id']}/complete",
        key=admin_key,
        json_body={"org_id": tenant.org_id, "external_reference": "pi_123"},
    )
    # Then the credits and the bonus arrive as two lots
    assert done.status == 200, done.body
    assert done.json()["status"] == "completed"
    lots = decimal_json(api.get("/v1/credits/balance", key=tenant.member_key))["lots"]
    assert sorted((lot["kind"], lot["remaining"]) for lot in lots) == [("bonus", 250), ("purchased", 5000)]
    assert balance_of(api, admin_key, tenant.org_id) == 5250
    # And the owner reads it back
    read = api.get(f"/v1/credits/purchases/{purchase['purchase_id']}", key=tenant.owner_key)
    assert read.status == 200
    assert read.json()["status"] == "completed"
    assert_ledger_matches_balance(api, admin_key, tenant.org_id)


def test_purchase_rights(api: Api, admin_key: str, make_tenant: Any) -> None:
    a, b = make_tenant("A"), make_tenant("B")
    purchase = create_purchase(api, a)
    pid = purchase["purchase_id"]
    # A member cannot buy nor read purchases (403)
    assert_problem(
        api.post("/v1/credits/purchases", key=a.member_key, json_body={"package": "growth_pack"}),
        403,
        "forbidden",
    )
    assert_problem(api.get(f"/v1/credits/purchases/{pid}", key=a.member_key), 403, "forbidden")
    # Another org's owner gets 404 reading it, naming it, or buying for A
    assert_problem(api.get(f"/v1/credits/purchases/{pid}", key=b.owner_key), 404, "not_found")
    assert_problem(
        api.get(f"/v1/credits/purchases/{pid}?org_id={a.org_id}", key=b.owner_key), 404, "not_found"
    )
    assert_problem(
        api.post(
            "/v1/credits/purchases", key=b.owner_key, json_body={"package": "growth_pack", "org_id": a.org_id}
        ),
        404,
        "not_found",
    )
    # Only the admin settles: an owner is refused on its own purchase, and sees nothing of another's
    for action in ("complete", "fail", "refund"):
        assert_problem(api.post(f"/v1/credits/purchases/{pid}/{action}", key=a.owner_key), 403, "forbidden")
        assert_problem(api.post(f"/v1/credits/purchases/{pid}/{action}", key=b.owner_key), 404, "not_found")
    # The admin buys for an org it names
    made = api.post(
        "/v1/credits/purchases", key=admin_key, json_body={"package": "starter_pack", "org_id": b.org_id}
    )
    assert made.status == 201, made.body
    assert made.json()["org_id"] == b.org_id
    assert api.get(f"/v1/credits/purchases/{pid}?org_id={a.org_id}", key=admin_key).status == 200
    # And nothing moved anywhere
    assert balance_of(api, admin_key, a.org_id) == balance_of(api, admin_key, b.org_id) == 0


BAD_PURCHASES: list[tuple[dict[str, Any], int, str]] = [
    ({"package": "gold"}, 422, "package"),
    ({"package": 5}, 422, "package"),
    ({"package": ""}, 422, "package"),
    ({}, 422, "package"),
    ({"package": "growth_pack", "price": 1}, 422, "price"),
    ({"package": "growth_pack", "org_id": ""}, 422, "org_id"),
]


def test_bad_purchases_are_422(api: Api, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    for body, status, field in BAD_PURCHASES:
        response = api.post("/v1/credits/purchases", key=tenant.owner_key, json_body=body)
        problem = assert_problem(response, status, "invalid_request")
        assert any(error["field"].endswith(field) for error in problem["errors"]), problem


MALFORMED_PURCHASE_BODIES = [b"{", b"", b"null"]


def test_malformed_or_missing_purchase_bodies_are_4xx(api: Api, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    for raw in MALFORMED_PURCHASE_BODIES:
        response = api.request(
            "POST",
            "/v1/credits/purchases",
            key=tenant.owner_key,
            body=raw,
            headers={"Content-Type": "application/json"},
        )
        assert response.status in (400, 422), response.body
        assert response.header("Content-Type") == "application/problem+json"


BAD_PURCHASE_IDS = ["pur_nope", "x" * 300, "pur_00000000000000000000000000", "%00"]


def test_bad_or_unknown_purchase_ids_are_404(api: Api, admin_key: str, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    for purchase_id in BAD_PURCHASE_IDS:
        assert_problem(
            api.get(f"/v1/credits/purchases/{purchase_id}", key=tenant.owner_key), 404, "not_found"
        )
        done = api.post(
            f"/v1/credits/purchases/{purchase_id}/complete",
            key=admin_key,
            json_body={"org_id": tenant.org_id},
        )
        assert_problem(done, 404, "not_found")


def test_a_replayed_purchase_creates_one_purchase(api: Api, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    headers = {"Idempotency-Key": "checkout-1"}
    first = api.post(
        "/v1/credits/purchases", key=tenant.owner_key, json_body={"package": "scale_pack"}, headers=headers
    )
    again = api.post(
        "/v1/credits/purchases", key=tenant.owner_key, json_body={"package": "scale_pack"}, headers=headers
    )
    assert first.status == again.status == 201
    assert first.body == again.body
    assert first.header("Location") == f"/v1/credits/purchases/{first.json()['purchase_id']}"


def test_transitions_happen_at_most_once(api: Api, admin_key: str, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    pending = create_purchase(api, tenant)["purchase_id"]
    settle = {"org_id": tenant.org_id}
    # A pending purchase cannot be refunded
    assert_problem(
        api.post(f"/v1/credits/purchases/{pending}/refund", key=admin_key, json_body=settle), 409, "conflict"
    )
    # Failing it twice fails it once; it can then never complete
    assert (
        api.post(f"/v1/credits/purchases/{pending}/fail", key=admin_key, json_body=settle).json()["status"]
        == "failed"
    )
    assert (
        api.post(f"/v1/credits/purchases/{pending}/fail", key=admin_key, json_body=settle).json()["status"]
        == "failed"
    )
    done = api.post(f"/v1/credits/purchases/{pending}/complete", key=admin_key, json_body=settle)
    assert_problem(done, 409, "conflict")
    # The admin must say which org, with well-formed fields
    assert_problem(
        api.post(f"/v1/credits/purchases/{pending}/complete", key=admin_key), 422, "invalid_request"
    )
    bad = api.post(
        f"/v1/credits/purchases/{pending}/complete",
        key=admin_key,
        json_body={"org_id": tenant.org_id, "x": 1},
    )
    assert_problem(bad, 422, "invalid_request")
    assert balance_of(api, admin_key, tenant.org_id) == 0
    assert_ledger_matches_balance(api, admin_key, tenant.org_id)


def test_a_refund_takes_back_only_the_unspent_credits_of_that_purchase(
    api: Api, admin_key: str, make_tenant: Any
) -> None:
    # Given a completed purchase of 1,000 credits, 300 of them spent, and a separate grant
    tenant: Tenant = make_tenant()
    pid = create_purchase(api, tenant, "starter_pack")["purchase_id"]
    settle = {"org_id": tenant.org_id}
    assert api.post(f"/v1/credits/purchases/{pid}/complete", key=admin_key, json_body=settle).status == 200
    spend(tenant.org_id, 3_000_000)
    assert grant(api, admin_key, tenant.org_id, 5).status == 201
    assert balance_of(api, admin_key, tenant.org_id) == 705
    # When the admin refunds it (twice, with an Idempotency-Key)
    headers = {"Idempotency-Key": "refund-1"}
    first = api.post(f"/v1/credits/purchases/{pid}/refund", key=admin_key, json_body=settle, headers=headers)
    again = api.post(f"/v1/credits/purchases/{pid}/refund", key=admin_key, json_body=settle, headers=headers)
    # Then the 700 unspent credits of that purchase leave, once; the spent 300 and the grant stay
    assert first.status == 200, first.body
    assert again.body == first.body
    refunded = decimal_json(first)
    assert refunded["status"] == "refunded"
    assert refunded["refunded_credits"] == 700
    assert balance_of(api, admin_key, tenant.org_id) == 5
    entries = assert_ledger_matches_balance(api, admin_key, tenant.org_id)
    assert [e["amount"] for e in entries if e["kind"] == "refund"] == [-700]


# -- the payment webhook -------------------------------------------------------------------------


def test_a_purchase_completes_once_when_the_webhook_arrives_three_times(
    api: Api, admin_key: str, make_tenant: Any, stack: CreatedStack
) -> None:
    # Given a pending purchase and the provider's signed "payment succeeded" event
    tenant: Tenant = make_tenant()
    purchase = create_purchase(api, tenant, "growth_pack")
    event = {
        "id": "evt_1",
        "type": "payment.succeeded",
        "org_id": tenant.org_id,
        "purchase_id": purchase["purchase_id"],
        "payment_reference": "pi_42",
    }
    secret = webhook_secret(stack)
    # When the provider delivers it three times (each delivery signed anew)
    answers = [send_webhook(api, secret, event) for _ in range(3)]
    # Then every delivery gets the same outcome, and the credits arrived once
    assert [a.status for a in answers] == [200, 200, 200], answers[0].body
    assert {a.json()["purchase"]["status"] for a in answers} == {"completed"}
    assert answers[0].json()["purchase"]["external_reference"] == "pi_42"
    assert balance_of(api, admin_key, tenant.org_id) == 5250
    entries = assert_ledger_matches_balance(api, admin_key, tenant.org_id)
    assert sorted(e["kind"] for e in entries) == ["bonus", "purchase"]


def test_the_webhook_fails_and_refunds(
    api: Api, admin_key: str, make_tenant: Any, stack: CreatedStack
) -> None:
    tenant: Tenant = make_tenant()
    secret = webhook_secret(stack)
    failed = create_purchase(api, tenant)["purchase_id"]
    base = {"org_id": tenant.org_id, "purchase_id": failed}
    assert (
        send_webhook(api, secret, {**base, "id": "evt_f", "type": "payment.failed"}).json()["purchase"][
            "status"
        ]
        == "failed"
    )
    # A success after a failure cannot apply: a conflict, and no credits
    late = send_webhook(api, secret, {**base, "id": "evt_s", "type": "payment.succeeded"})
    assert_problem(late, 409, "conflict")
    # A completed purchase refunded by the provider takes its credits back
    paid = create_purchase(api, tenant, "starter_pack")["purchase_id"]
    base = {"org_id": tenant.org_id, "purchase_id": paid}
    assert send_webhook(api, secret, {**base, "id": "evt_p", "type": "payment.succeeded"}).status == 200
    assert balance_of(api, admin_key, tenant.org_id) == 1000
    refund = send_webhook(api, secret, {**base, "id": "evt_r", "type": "payment.refunded"})
    assert refund.json()["purchase"]["status"] == "refunded"
    assert balance_of(api, admin_key, tenant.org_id) == 0
    assert_ledger_matches_balance(api, admin_key, tenant.org_id)


@pytest.mark.parametrize(
    "tamper", ["missing", "malformed", "wrong_secret", "stale", "future", "tampered_body"]
)
def test_a_webhook_without_a_valid_signature_is_401_and_changes_nothing(
    api: Api, admin_key: str, make_tenant: Any, stack: CreatedStack, tamper: str
) -> None:
    # Given a pending purchase and a "payment succeeded" event for it
    tenant: Tenant = make_tenant()
    purchase = create_purchase(api, tenant)
    event = {
        "id": "evt_x",
        "type": "payment.succeeded",
        "org_id": tenant.org_id,
        "purchase_id": purchase["purchase_id"],
    }
    secret = webhook_secret(stack)
    body = json.dumps(event).encode()
    now = int(time.time())
    headers = {"Content-Type": "application/json"}
    if tamper == "malformed":
        headers["Tollgate-Signature"] = "sha256=abc"
    elif tamper == "wrong_secret":
        headers["Tollgate-Signature"] = signature_header(b"not the secret", now, body)
    elif tamper == "stale":
        headers["Tollgate-Signature"] = signature_header(secret, now - 301, body)
    elif tamper == "future":
        headers["Tollgate-Signature"] = signature_header(secret, now + 3600, body)
    elif tamper == "tampered_body":
        headers["Tollgate-Signature"] = signature_header(secret, now, body)
        body = body.replace(b"payment.succeeded", b"payment.refunded")
    # When it is delivered
    response = api.request("POST", "/v1/credits/webhooks/payments", body=body, headers=headers)
    # Then it is a 401 problem, and the purchase is still pending with no credits
    assert_problem(response, 401, "unauthorized")
    still = api.get(f"/v1/credits/purchases/{purchase['purchase_id']}", key=tenant.owner_key).json()
    assert still["status"] == "pending"
    assert balance_of(api, admin_key, tenant.org_id) == 0
    assert_ledger_matches_balance(api, admin_key, tenant.org_id)


BAD_EVENTS: list[tuple[Any, int]] = [
    ({"id": "evt_1", "type": "payment.maybe", "org_id": "org_x", "purchase_id": "pur_x"}, 422),
    ({"id": "evt_1", "type": "payment.succeeded", "org_id": "org_x"}, 422),
    ({"id": "evt 1", "type": "payment.succeeded", "org_id": "org_x", "purchase_id": "pur_x"}, 422),
    (
        {"id": "evt_1", "type": "payment.succeeded", "org_id": "org_x", "purchase_id": "pur_x", "x": 1},
        422,
    ),
    ({"id": "evt_1", "type": "payment.succeeded", "org_id": "org_x", "purchase_id": "pur_x"}, 404),
    (["not", "an", "object"], 422),
]


def test_a_signed_but_bad_event_is_a_4xx_problem(api: Api, stack: CreatedStack) -> None:
    secret = webhook_secret(stack)
    for event, status in BAD_EVENTS:
        response = send_webhook(api, secret, event)
        assert response.status == status, (event, response.body)
        assert response.header("Content-Type") == "application/problem+json"


def test_a_signed_body_that_is_not_json_is_400(api: Api, stack: CreatedStack) -> None:
    body = b'{"id": "evt_1", '
    header = signature_header(webhook_secret(stack), int(time.time()), body)
    response = api.request(
        "POST",
        "/v1/credits/webhooks/payments",
        body=body,
        headers={"Content-Type": "application/json", "Tollgate-Signature": header},
    )
    assert_problem(response, 400, "invalid_request")


# -- availability and alerts -----------------------------------------------------------------------


def test_availability_answers_for_a_feature(api: Api, admin_key: str, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    # Given no credits: not allowed, for want of credits
    broke = api.get("/v1/credits/availability?feature=color_analysis", key=tenant.member_key)
    assert broke.status == 200, broke.body
    assert (broke.json()["allowed"], broke.json()["reason"]) == (False, "insufficient_credits")
    assert decimal_json(broke)["needed_credits"] == Decimal("0.5")
    # Given credits: allowed, with the limits that apply
    grant(api, admin_key, tenant.org_id, 1)
    ok = api.get("/v1/credits/availability?feature=color_analysis", key=tenant.member_key)
    assert ok.json()["allowed"] is True
    assert decimal_json(ok)["available_credits"] == 1
    assert ok.json()["limits"]
    # An image estimate is priced from the price table
    image = api.get(
        "/v1/credits/availability?feature=image&images=1&image_size=1024x1024&image_quality=hd"
        "&model=openai/dall-e-3",
        key=tenant.member_key,
    )
    assert image.status == 200, image.body


BAD_AVAILABILITY = [
    ("", "feature"),
    ("feature=", "feature"),
    ("feature=teleport", "feature"),
    ("feature=chat&input_tokens=-1", "input_tokens"),
    ("feature=chat&input_tokens=many", "input_tokens"),
    ("feature=image&images=1&model=nobody/nothing", "model"),
    ("feature=image&image_quality=ultra", "image_quality"),
]


def test_bad_availability_questions_are_422(api: Api, make_tenant: Any) -> None:
    tenant: Tenant = make_tenant()
    for query, field in BAD_AVAILABILITY:
        response = api.get(f"/v1/credits/availability?{query}", key=tenant.member_key)
        problem = assert_problem(response, 422, "invalid_request")
        assert any(error["field"].endswith(field) for error in problem["errors"]), problem


def test_a_low_balance_alert_is_recorded_once_and_published(
    api: Api, admin_key: str, make_tenant: Any, stack: CreatedStack
) -> None:
    # Given the alerts bus routed to a queue, and an org topped up with 1,000 credits
    queue_url = alerts_to_queue(stack)
    tenant: Tenant = make_tenant()
    pid = create_purchase(api, tenant, "starter_pack")["purchase_id"]
    settle = {"org_id": tenant.org_id}
    assert api.post(f"/v1/credits/purchases/{pid}/complete", key=admin_key, json_body=settle).status == 200
    # When 849.9999 are spent (balance 150.0001: below 20 %), then the purchase is refunded (-> 0)
    spend(tenant.org_id, 8_499_999)
    assert api.post(f"/v1/credits/purchases/{pid}/refund", key=admin_key, json_body=settle).status == 200
    # Then the alerts are listed, each once, and those of the refund were published right away
    alerts = api.get("/v1/credits/alerts", key=tenant.member_key)
    assert alerts.status == 200
    items = decimal_json(alerts)["items"]
    kinds = sorted((a["kind"], a["threshold_percent"]) for a in items)
    assert kinds == [("depleted", 0), ("low_balance", 10), ("low_balance", 20)]
    assert all(a["published"] for a in items)
    published = drain_queue(queue_url)
    assert sorted(e["detail"]["alert_id"] for e in published) == sorted(a["alert_id"] for a in items)
    assert {e["source"] for e in published} == {"tollgate.credits"}
    assert_ledger_matches_balance(api, admin_key, tenant.org_id)


def test_the_sample_event_is_answered(stack: CreatedStack) -> None:
    # Given the sample event of events/credits.json (as `sam local invoke -e` sends it)
    # When the template's CreditsFunction handles it
    result = in_process_invoker(default_template())("CreditsFunction", load_event("credits"))
    # Then it is a proxy answer: the (empty) ledger of the sample org
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"]) == {"items": [], "next_cursor": None}
