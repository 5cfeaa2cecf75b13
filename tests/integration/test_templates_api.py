"""The templates API through the template's gateway and authorizer, in process (moto): CRUD and
versions, the tenancy matrix, safe and exact rendering, generation from a template with its
declared price charged to the unit, use counts, the starter templates and the sample event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from msgspec.structs import replace

from tests.conftest import Api, ApiResponse, Tenant, load_event
from tests.integration.test_credits_api import (
    assert_ledger_matches_balance,
    assert_problem,
    balance_of,
    grant,
)
from tests.integration.test_metering_support import Metering, metering_on_stack
from tollgate import services
from tollgate.aws.template_store import DynamoTemplateStore
from tollgate.credits.amounts import credits_of_units
from tollgate.metering.models import Usage
from tollgate.metering.pricing import FeatureRule, default_pricing
from tollgate.templates.ports import VersionConflict
from tollgate.templates.starter import load_starters
from tollgate_local.invoke import in_process_invoker
from tollgate_local.resources import CreatedStack
from tollgate_local.seed_templates import seed_table
from tollgate_local.template import default_template

GREETING: dict[str, Any] = {
    "name": "Greeting",
    "category": "demo",
    "body": "Say hello to {{ who }} in {{ lang }}.",
    "variables": [
        {"name": "who", "max_length": 20},
        {"name": "lang", "type": "enum", "values": ["en", "fr"], "default": "en"},
    ],
    "params": {"model": "mock/chat", "max_tokens": 40},
}


@pytest.fixture(autouse=True)
def metering(stack: CreatedStack) -> Iterator[Metering]:
    """After every test, every org's ledger adds up (balance = sum of entries, no lot below 0)."""
    yield from metering_on_stack(stack)


@pytest.fixture
def org_a(api: Api, admin_key: str, make_tenant: Any) -> Tenant:
    tenant: Tenant = make_tenant("Org A")
    assert grant(api, admin_key, tenant.org_id, 100).status == 201
    return tenant


@pytest.fixture
def org_b(api: Api, admin_key: str, make_tenant: Any) -> Tenant:
    tenant: Tenant = make_tenant("Org B")
    assert grant(api, admin_key, tenant.org_id, 100).status == 201
    return tenant


def put(api: Api, url: str, key: str, body: Any) -> ApiResponse:
    return api.request("PUT", url, key=key, json_body=body)


def raw_post(api: Api, url: str, key: str, text: str) -> ApiResponse:
    """POST a JSON body written by hand (numbers with exact digits)."""
    return api.request("POST", url, key=key, body=text.encode(), headers={"Content-Type": "application/json"})


def create(api: Api, key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = api.post("/v1/templates", key=key, json_body=body or GREETING)
    assert response.status == 201, response.body
    created: dict[str, Any] = response.json()
    return created


def field_errors(response: ApiResponse) -> dict[str, str]:
    problem = assert_problem(response, 422, "invalid_request")
    return {error["field"]: error["message"] for error in problem["errors"]}


# -- CRUD and versions ---------------------------------------------------------------------------


def test_an_owner_creates_reads_updates_and_deletes_a_template_with_versions(api: Api, org_a: Tenant) -> None:
    # When an owner creates a template
    created = create(api, org_a.owner_key)
    tid = created["id"]
    # Then it is private to the org, at version 1, as sent
    assert (created["visibility"], created["org_id"], created["version"]) == ("private", org_a.org_id, 1)
    assert created["body"] == GREETING["body"]
    assert created["variables"][1] == {
        "name": "lang",
        "type": "enum",
        "required": False,
        "default": "en",
        "values": ["en", "fr"],
    }
    assert api.get(f"/v1/templates/{tid}", key=org_a.member_key).json()["name"] == "Greeting"
    # When the owner updates its body
    updated = put(api, f"/v1/templates/{tid}", org_a.owner_key, {"body": "Hi {{ who }} ({{ lang }})"})
    # Then it is version 2, and both versions are readable
    assert updated.status == 200, updated.body
    assert updated.json()["version"] == 2
    first = api.get(f"/v1/templates/{tid}/versions/1", key=org_a.member_key).json()
    second = api.get(f"/v1/templates/{tid}/versions/2", key=org_a.member_key).json()
    assert (first["body"], second["body"]) == (GREETING["body"], "Hi {{ who }} ({{ lang }})")
    assert_problem(api.get(f"/v1/templates/{tid}/versions/3", key=org_a.member_key), 404, "not_found")
    assert_problem(api.get(f"/v1/templates/{tid}/versions/x", key=org_a.member_key), 404, "not_found")
    # When it is deleted
    deleted = api.delete(f"/v1/templates/{tid}", key=org_a.owner_key)
    assert deleted.status == 204
    # Then it no longer resolves nor lists, but its versions still read (records name them)
    assert_problem(api.get(f"/v1/templates/{tid}", key=org_a.owner_key), 404, "not_found")
    assert_problem(
        api.post(f"/v1/templates/{tid}/render", key=org_a.owner_key, json_body={"variables": {"who": "x"}}),
        404,
        "not_found",
    )
    assert tid not in [t["id"] for t in api.get("/v1/templates", key=org_a.owner_key).json()["data"]]
    old = api.get(f"/v1/templates/{tid}/versions/1", key=org_a.owner_key).json()
    assert old["template_deleted"] is True


def test_an_old_version_still_renders_and_generates_as_it_did(api: Api, org_a: Tenant) -> None:
    tid = create(api, org_a.owner_key)["id"]
    assert put(api, f"/v1/templates/{tid}", org_a.owner_key, {"body": "New: {{ who }}"}).status == 200
    variables = {"who": "Ann"}
    current = api.post(
        f"/v1/templates/{tid}/render", key=org_a.member_key, json_body={"variables": variables}
    )
    old = api.post(
        f"/v1/templates/{tid}/render", key=org_a.member_key, json_body={"variables": variables, "version": 1}
    )
    assert (current.json()["prompt"], current.json()["version"]) == ("New: Ann", 2)
    assert (old.json()["prompt"], old.json()["version"]) == ("Say hello to Ann in en.", 1)
    generated = api.post(
        f"/v1/templates/{tid}/generate",
        key=org_a.member_key,
        json_body={"variables": variables, "version": 1},
    )
    assert generated.status == 200, generated.body
    record = generated.json()
    assert record["prompt"] == [{"role": "user", "content": "Say hello to Ann in en."}]
    assert (record["template_id"], record["template_version"]) == (tid, 1)


def test_two_updates_from_the_same_version_one_wins_the_other_is_409(api: Api, org_a: Tenant) -> None:
    tid = create(api, org_a.owner_key)["id"]
    # Through the API: both say they edit version 1
    first = put(api, f"/v1/templates/{tid}", org_a.owner_key, {"name": "First", "base_version": 1})
    second = put(api, f"/v1/templates/{tid}", org_a.owner_key, {"name": "Second", "base_version": 1})
    assert first.status == 200
    assert_problem(second, 409, "conflict")
    # And in the table itself: two writers that both read version 2 race for version 3
    store = DynamoTemplateStore(services.table())
    (head,) = store.heads([org_a.org_id], tid)
    mine = replace(head, version=3, definition=head.definition.model_copy(update={"name": "A"}))
    theirs = replace(head, version=3, definition=head.definition.model_copy(update={"name": "B"}))
    store.save_version(mine, previous_version=2)
    with pytest.raises(VersionConflict):
        store.save_version(theirs, previous_version=2)
    now = api.get(f"/v1/templates/{tid}", key=org_a.owner_key).json()
    assert (now["version"], now["name"]) == (3, "A")
    assert api.get(f"/v1/templates/{tid}/versions/3", key=org_a.owner_key).json()["name"] == "A"


def test_listing_filters_by_category_and_visibility_and_pages(
    api: Api, admin_key: str, org_a: Tenant
) -> None:
    # Given five templates of the org in two categories, and a public one
    ids = {
        category: [create(api, org_a.owner_key, {**GREETING, "category": category})["id"] for _ in range(n)]
        for category, n in (("demo", 3), ("sales", 2))
    }
    public = create(api, admin_key, {**GREETING, "category": "demo"})["id"]
    # When the org pages through all of them two at a time
    seen: list[str] = []
    url = "/v1/templates?limit=2"
    while True:
        page = api.get(url, key=org_a.member_key).json()
        seen.extend(t["id"] for t in page["data"])
        if page["next_cursor"] is None:
            break
        url = f"/v1/templates?limit=2&cursor={page['next_cursor']}"
    # Then it sees its own (by category) then the public one, each once
    assert seen == sorted(ids["demo"]) + sorted(ids["sales"]) + [public]
    demo = api.get("/v1/templates?category=demo&visibility=private", key=org_a.member_key).json()["data"]
    assert [t["id"] for t in demo] == sorted(ids["demo"])
    only_public = api.get("/v1/templates?visibility=public", key=org_a.member_key).json()["data"]
    assert [t["id"] for t in only_public] == [public]
    # And a cursor of one listing is refused by another
    cursor = api.get("/v1/templates?limit=2", key=org_a.member_key).json()["next_cursor"]
    assert_problem(
        api.get(f"/v1/templates?limit=2&category=demo&cursor={cursor}", key=org_a.member_key),
        400,
        "invalid_request",
    )
    assert_problem(api.get("/v1/templates?cursor=not-a-cursor", key=org_a.member_key), 400, "invalid_request")
    assert_problem(
        api.get("/v1/templates?category=Not%20A%20Slug", key=org_a.member_key), 422, "invalid_request"
    )


def test_a_cursor_of_one_org_is_refused_for_another(api: Api, org_a: Tenant, org_b: Tenant) -> None:
    for _ in range(3):
        create(api, org_a.owner_key)
    cursor = api.get("/v1/templates?limit=2", key=org_a.member_key).json()["next_cursor"]
    assert cursor
    assert_problem(
        api.get(f"/v1/templates?limit=2&cursor={cursor}", key=org_b.member_key), 400, "invalid_request"
    )


def test_creating_with_an_idempotency_key_twice_makes_one_template(api: Api, org_a: Tenant) -> None:
    headers = {"Idempotency-Key": "create-greeting-1"}
    first = api.post("/v1/templates", key=org_a.owner_key, json_body=GREETING, headers=headers)
    again = api.post("/v1/templates", key=org_a.owner_key, json_body=GREETING, headers=headers)
    assert (first.status, again.status) == (201, 201)
    assert again.header("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(api.get("/v1/templates?visibility=private", key=org_a.owner_key).json()["data"]) == 1


# -- tenancy -------------------------------------------------------------------------------------


def _attempt(api: Api, operation: str, tid: str, key: str) -> int:
    variables = {"variables": {"who": "Ann"}}
    if operation == "read":
        return api.get(f"/v1/templates/{tid}", key=key).status
    if operation == "versions":
        return api.get(f"/v1/templates/{tid}/versions/1", key=key).status
    if operation == "update":
        return put(api, f"/v1/templates/{tid}", key, {"name": "Changed"}).status
    if operation == "render":
        return api.post(f"/v1/templates/{tid}/render", key=key, json_body=variables).status
    if operation == "generate":
        return api.post(f"/v1/templates/{tid}/generate", key=key, json_body=variables).status
    if operation == "generate_native":
        return api.post("/v1/generate", key=key, json_body={"template_id": tid, **variables}).status
    assert operation == "delete"
    return api.delete(f"/v1/templates/{tid}", key=key).status


OPERATIONS = ["read", "versions", "render", "generate", "generate_native", "update", "delete"]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        # an org's private template: its members use it, its owners manage it, nobody else sees it
        (
            "owner",
            {
                "read": 200,
                "versions": 200,
                "render": 200,
                "generate": 200,
                "generate_native": 200,
                "update": 200,
                "delete": 204,
            },
        ),
        (
            "member",
            {
                "read": 200,
                "versions": 200,
                "render": 200,
                "generate": 200,
                "generate_native": 200,
                "update": 403,
                "delete": 403,
            },
        ),
        ("other_owner", dict.fromkeys(OPERATIONS, 404)),
        ("other_member", dict.fromkeys(OPERATIONS, 404)),
        (
            "admin",
            {
                "read": 404,
                "versions": 404,
                "render": 404,
                "generate": 403,
                "generate_native": 403,
                "update": 404,
                "delete": 404,
            },
        ),
    ],
)
def test_the_tenancy_matrix_of_a_private_template(
    api: Api, admin_key: str, org_a: Tenant, org_b: Tenant, who: str, expected: dict[str, int]
) -> None:
    keys = {
        "owner": org_a.owner_key,
        "member": org_a.member_key,
        "other_owner": org_b.owner_key,
        "other_member": org_b.member_key,
        "admin": admin_key,
    }
    tid = create(api, org_a.owner_key)["id"]
    got = {operation: _attempt(api, operation, tid, keys[who]) for operation in OPERATIONS}
    assert got == expected


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (
            "owner",
            {
                "read": 200,
                "versions": 200,
                "render": 200,
                "generate": 200,
                "generate_native": 200,
                "update": 403,
                "delete": 403,
            },
        ),
        (
            "member",
            {
                "read": 200,
                "versions": 200,
                "render": 200,
                "generate": 200,
                "generate_native": 200,
                "update": 403,
                "delete": 403,
            },
        ),
        (
            "admin",
            {
                "read": 200,
                "versions": 200,
                "render": 200,
                "generate": 403,
                "generate_native": 403,
                "update": 200,
                "delete": 204,
            },
        ),
    ],
)
def test_a_public_template_is_read_by_every_org_and_written_by_the_admin_only(
    api: Api, admin_key: str, org_b: Tenant, who: str, expected: dict[str, int]
) -> None:
    keys = {"owner": org_b.owner_key, "member": org_b.member_key, "admin": admin_key}
    tid = create(api, admin_key)["id"]
    assert api.get(f"/v1/templates/{tid}", key=admin_key).json()["visibility"] == "public"
    got = {operation: _attempt(api, operation, tid, keys[who]) for operation in OPERATIONS}
    assert got == expected


def test_only_the_admin_publishes_and_members_create_nothing(api: Api, admin_key: str, org_a: Tenant) -> None:
    assert_problem(
        api.post("/v1/templates", key=org_a.owner_key, json_body={**GREETING, "visibility": "public"}),
        403,
        "forbidden",
    )
    assert_problem(api.post("/v1/templates", key=org_a.member_key, json_body=GREETING), 403, "forbidden")
    errors = field_errors(
        api.post("/v1/templates", key=admin_key, json_body={**GREETING, "visibility": "private"})
    )
    assert "visibility" in errors


# -- rendering -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["{{lang}}", "{{ lang }}", "{{", "}}", "\\{{lang}}", "🚀 ünïcödé {{x}}"])
def test_a_value_with_template_syntax_is_inserted_as_plain_text(api: Api, org_a: Tenant, value: str) -> None:
    tid = create(api, org_a.owner_key)["id"]
    rendered = api.post(
        f"/v1/templates/{tid}/render",
        key=org_a.member_key,
        json_body={"variables": {"who": value, "lang": "fr"}},
    )
    assert rendered.status == 200, rendered.body
    assert rendered.json()["prompt"] == f"Say hello to {value} in fr."


def test_missing_unknown_ill_typed_and_too_long_variables_are_each_named(api: Api, org_a: Tenant) -> None:
    tid = create(api, org_a.owner_key)["id"]
    url = f"/v1/templates/{tid}/render"
    errors = field_errors(
        api.post(url, key=org_a.member_key, json_body={"variables": {"lang": 3, "mood": "happy"}})
    )
    assert set(errors) == {"variables.who", "variables.lang", "variables.mood"}
    assert errors["variables.who"] == "Field required"
    too_long = field_errors(api.post(url, key=org_a.member_key, json_body={"variables": {"who": "x" * 21}}))
    assert "at most 20 characters" in too_long["variables.who"]
    # The same refusals when generating: nothing is charged, nothing recorded
    generated = api.post(f"/v1/templates/{tid}/generate", key=org_a.member_key, json_body={"variables": {}})
    assert "variables.who" in field_errors(generated)
    assert api.get("/v1/requests", key=org_a.owner_key).json()["data"] == []


def test_numbers_keep_their_exact_digits_in_and_out(api: Api, org_a: Tenant) -> None:
    # Given a number variable whose default is 1.50, sent as written
    body = (
        '{"name": "Amount", "body": "{{ who }}: {{ amount }}", "params": {"model": "mock/chat"}, '
        '"variables": [{"name": "who"}, {"name": "amount", "type": "number", "default": 1.50}]}'
    )
    created = raw_post(api, "/v1/templates", org_a.owner_key, body)
    assert created.status == 201, created.body
    assert b'"default":1.50' in created.body
    tid = created.json()["id"]
    # When it renders with its default, and with a number of 30 digits
    url = f"/v1/templates/{tid}/render"
    default = api.post(url, key=org_a.member_key, json_body={"variables": {"who": "A"}})
    long = raw_post(
        api, url, org_a.member_key, '{"variables": {"who": "B", "amount": 12345678901234567890.123456789}}'
    )
    exponent = raw_post(api, url, org_a.member_key, '{"variables": {"who": "C", "amount": 1e2}}')
    # Then each is written exactly, never through a float
    assert default.json()["prompt"] == "A: 1.50"
    assert long.json()["prompt"] == "B: 12345678901234567890.123456789"
    assert exponent.json()["prompt"] == "C: 100"


def test_a_malformed_body_is_refused_when_saved_with_its_position(api: Api, org_a: Tenant) -> None:
    errors = field_errors(
        api.post(
            "/v1/templates", key=org_a.owner_key, json_body={**GREETING, "body": "Hi\n  {{ who | upper }}"}
        )
    )
    assert "line 2, column 3" in errors["body"]
    undeclared = field_errors(
        api.post("/v1/templates", key=org_a.owner_key, json_body={**GREETING, "body": "{{ whom }}"})
    )
    assert "whom" in undeclared["body"]
    nested = field_errors(
        api.post(
            "/v1/templates",
            key=org_a.owner_key,
            json_body={**GREETING, "variables": [{"name": "who", "type": "colour"}]},
        )
    )
    assert "variables.0.type" in nested
    unknown = api.post("/v1/templates", key=org_a.owner_key, json_body={**GREETING, "colour": "red"})
    assert "colour" in field_errors(unknown)


def test_a_wrong_json_type_inside_a_definition_is_refused_not_coerced(api: Api, org_a: Tenant) -> None:
    # Given a template of the org
    tid = create(api, org_a.owner_key)["id"]
    wrong_types = {
        "variables": [{"name": "who", "max_length": "20"}, {"name": "lang", "required": "yes"}],
        "params": {"model": "mock/chat", "max_tokens": 40, "temperature": "0.5", "stop": [7]},
    }
    # When a definition says a number as a string, a boolean as a string, a string as a number
    created = api.post("/v1/templates", key=org_a.owner_key, json_body={**GREETING, **wrong_types})
    updated = put(api, f"/v1/templates/{tid}", org_a.owner_key, wrong_types)
    # Then each is refused, naming the field, on create and on update
    expected = {"variables.0.max_length", "variables.1.required", "params.temperature", "params.stop.0"}
    assert set(field_errors(created)) == expected
    assert set(field_errors(updated)) == expected
    # and nothing was saved: the template is still at version 1
    assert api.get(f"/v1/templates/{tid}", key=org_a.owner_key).json()["version"] == 1
    # while the same definition with JSON's own types is taken, arrays and decimals included
    right = raw_post(
        api,
        "/v1/templates",
        org_a.owner_key,
        '{"name": "Typed", "body": "Hi {{ who }}", "variables": [{"name": "who", "max_length": 20,'
        ' "required": true}], "params": {"model": "mock/chat", "temperature": 0.5, "stop": ["."]}}',
    )
    assert right.status == 201, right.body
    assert right.json()["params"]["temperature"] == 0.5


# -- generating, charging, counting --------------------------------------------------------------


def test_the_price_a_template_declares_is_what_the_ledger_charges(
    api: Api, admin_key: str, org_a: Tenant
) -> None:
    # Given a template with a flat price of 0.3 credit, and one at cost x 2.5 with a floor
    flat = create(
        api, org_a.owner_key, {**GREETING, "feature": "greeting", "price": {"rule": "flat", "credits": 0.3}}
    )
    plus = create(
        api,
        org_a.owner_key,
        {
            **GREETING,
            "feature": "greeting_plus",
            "price": {"rule": "cost_plus", "markup": 2.5, "minimum_credits": 0.0001},
        },
    )
    assert flat["price"] == {"rule": "flat", "credits": 0.3, "cache_hit_credits": None}
    # When each generates once
    before = balance_of(api, admin_key, org_a.org_id)
    first = api.post(
        f"/v1/templates/{flat['id']}/generate", key=org_a.member_key, json_body={"variables": {"who": "Ann"}}
    )
    after_flat = balance_of(api, admin_key, org_a.org_id)
    second = api.post(
        "/v1/generate",
        key=org_a.member_key,
        json_body={"template_id": plus["id"], "variables": {"who": "Bo"}},
    )
    after_plus = balance_of(api, admin_key, org_a.org_id)
    assert (first.status, second.status) == (200, 200), (first.body, second.body)
    # Then the flat one cost exactly 0.3 credit: header, record and ledger agree
    assert Decimal(first.header("X-Credits-Charged") or "") == Decimal("0.3")
    assert Decimal(str(first.json()["credits_charged"])) == Decimal("0.3")
    assert before - after_flat == Decimal("0.3")
    assert first.json()["feature"] == "greeting"
    # And the cost-plus one cost exactly its rule applied to the reported usage
    record = second.json()
    usage = Usage("mock", "chat", record["usage"]["input_tokens"], record["usage"]["output_tokens"])
    rule = FeatureRule(
        name="greeting_plus", kind="text", rule="cost_plus", markup_bp=25_000, minimum_credits=1
    )
    expected = credits_of_units(default_pricing().charge(rule, usage).credits)
    assert expected > 0
    assert after_flat - after_plus == expected == Decimal(str(record["credits_charged"]))
    assert record["feature"] == "greeting_plus"
    # And in the ledger, each request's entries (hold, capture, release) add up to that price
    entries = assert_ledger_matches_balance(api, admin_key, org_a.org_id)
    for response, price in ((first, Decimal("0.3")), (second, expected)):
        moved = sum(
            Decimal(e["amount"]) for e in entries if e["reference"] == response.header("X-Request-Id")
        )
        assert moved == -price


def test_generation_records_and_usage_logs_name_the_template_and_uses_are_counted(
    api: Api, admin_key: str, org_a: Tenant
) -> None:
    # Given a private template and a public one
    private = create(api, org_a.owner_key)["id"]
    public = create(api, admin_key)["id"]
    # When the private one generates twice (through both routes) and the public one once
    ids = []
    for url, body in (
        (f"/v1/templates/{private}/generate", {"variables": {"who": "A"}}),
        ("/v1/generate", {"template_id": private, "variables": {"who": "B"}}),
        (f"/v1/templates/{public}/generate", {"variables": {"who": "C"}}),
    ):
        response = api.post(url, key=org_a.member_key, json_body=body)
        assert response.status == 200, response.body
        ids.append(response.header("X-Request-Id"))
    # Then each record names its template and version
    for request_id, tid in zip(ids, (private, private, public), strict=True):
        record = api.get(f"/v1/requests/{request_id}", key=org_a.member_key).json()
        assert (record["template_id"], record["template_version"]) == (tid, 1)
    # And so does each usage log entry
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    logged = {
        e.request_id: (e.template_id, e.template_version) for e in services.usage_log().day(org_a.org_id, day)
    }
    assert logged == {ids[0]: (private, 1), ids[1]: (private, 1), ids[2]: (public, 1)}
    # And the uses are counted on the template and on the version
    assert api.get(f"/v1/templates/{private}", key=org_a.member_key).json()["usage_count"] == 2
    assert api.get(f"/v1/templates/{private}/versions/1", key=org_a.member_key).json()["usage_count"] == 2
    assert api.get(f"/v1/templates/{public}", key=org_a.member_key).json()["usage_count"] == 1
    # And a new version counts on its own
    put(api, f"/v1/templates/{private}", org_a.owner_key, {"body": "Yo {{ who }} {{ lang }}"})
    api.post(f"/v1/templates/{private}/generate", key=org_a.member_key, json_body={"variables": {"who": "D"}})
    assert api.get(f"/v1/templates/{private}", key=org_a.member_key).json()["usage_count"] == 3
    assert api.get(f"/v1/templates/{private}/versions/1", key=org_a.member_key).json()["usage_count"] == 2
    assert api.get(f"/v1/templates/{private}/versions/2", key=org_a.member_key).json()["usage_count"] == 1


def test_a_failed_generation_from_a_template_charges_nothing_and_counts_no_use(
    api: Api, admin_key: str, org_a: Tenant
) -> None:
    tid = create(api, org_a.owner_key, {**GREETING, "price": {"rule": "flat", "credits": 1}})["id"]
    before = balance_of(api, admin_key, org_a.org_id)
    failed = api.post(
        f"/v1/templates/{tid}/generate",
        key=org_a.member_key,
        json_body={"variables": {"who": "A"}, "metadata": {"mock": {"fail": "error"}}},
    )
    assert_problem(failed, 502, "provider_error")
    assert balance_of(api, admin_key, org_a.org_id) == before
    assert api.get(f"/v1/templates/{tid}", key=org_a.member_key).json()["usage_count"] == 0
    record = api.get(f"/v1/requests/{failed.header('X-Request-Id')}", key=org_a.owner_key).json()
    assert (record["status"], record["template_id"]) == ("failed", tid)


def test_an_image_template_is_refused_by_the_text_generation(api: Api, org_a: Tenant) -> None:
    photo = create(
        api,
        org_a.owner_key,
        {
            "name": "Photo",
            "kind": "image",
            "body": "A {{ kind }}",
            "variables": [{"name": "kind"}],
            "params": {"model": "mock/image"},
        },
    )
    refused = api.post(
        f"/v1/templates/{photo['id']}/generate",
        key=org_a.member_key,
        json_body={"variables": {"kind": "loft"}},
    )
    assert "template_id" in field_errors(refused)
    rendered = api.post(
        f"/v1/templates/{photo['id']}/render", key=org_a.member_key, json_body={"variables": {"kind": "loft"}}
    )
    assert (rendered.json()["kind"], rendered.json()["params"]) == ("image", {"model": "mock/image"})


# -- starter templates and the sample event ------------------------------------------------------


def test_the_starter_templates_seed_once_and_every_org_reads_them(
    api: Api, org_a: Tenant, stack: CreatedStack
) -> None:
    table = services.table()
    # When the deploy-time step seeds the table twice
    first = seed_table(table.name, table.client)
    second = seed_table(table.name, table.client)
    # Then each starter was created once, and is public at version 1
    assert set(first.values()) == {"created"}
    assert set(second.values()) == {"unchanged"}
    public = api.get("/v1/templates?visibility=public&limit=100", key=org_a.member_key).json()["data"]
    assert {t["id"]: t["version"] for t in public} == {s.template_id: 1 for s in load_starters()}
    photo = api.post(
        "/v1/templates/tpl_starter-listing-photo/render",
        key=org_a.member_key,
        json_body={"variables": {"title": "Sunny loft", "property_type": "loft", "location": "Lyon"}},
    )
    assert photo.json()["kind"] == "image"
    assert "loft in Lyon" in photo.json()["prompt"]


def test_the_sample_event_is_answered(stack: CreatedStack) -> None:
    # Given the starter templates, and the sample event of events/templates.json
    table = services.table()
    seed_table(table.name, table.client)
    event = load_event("templates")
    # When the template's TemplatesFunction handles it (as `sam local invoke -e` sends it)
    result = in_process_invoker(default_template())("TemplatesFunction", event)
    # Then it is the product description rendered
    assert result["statusCode"] == 200, result
    body = json.loads(result["body"])
    assert body["template_id"] == "tpl_starter-product-description"
    assert 'for "Stoneware mug"' in body["prompt"]


def test_a_record_with_a_fractional_sampling_parameter_is_answered(api: Api, org_a: Tenant) -> None:
    # Given a template whose default temperature is 0.7 (as the starters have), and a plain
    # generation with a temperature: both records hold floats, which are not money
    tid = create(api, org_a.owner_key, {**GREETING, "params": {"model": "mock/chat", "temperature": 0.7}})[
        "id"
    ]
    templated = api.post(
        f"/v1/templates/{tid}/generate", key=org_a.member_key, json_body={"variables": {"who": "A"}}
    )
    plain = api.post(
        "/v1/generate",
        key=org_a.member_key,
        json_body={"model": "mock/chat", "prompt": "Hi", "params": {"top_p": 0.25}},
    )
    # Then both answer their record, the parameters as sent
    assert templated.status == 200, templated.body
    assert templated.json()["params"]["params"]["temperature"] == 0.7
    assert plain.status == 200, plain.body
    assert plain.json()["params"]["params"]["top_p"] == 0.25
