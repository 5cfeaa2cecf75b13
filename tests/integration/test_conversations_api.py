"""Conversations through the template's gateway and authorizer, in process (moto): many turns on
a model with a small context window, each one generation record and one charge; failures that
append and charge nothing; turns that cannot interleave; tenancy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import Api, ApiResponse, Tenant
from tests.integration.test_credits_api import (
    assert_ledger_matches_balance,
    assert_problem,
    balance_of,
    grant,
)
from tests.integration.test_metering_support import Metering, metering_on_stack
from tollgate import services
from tollgate.aws.conversation_store import DynamoConversationStore, conversation_pk
from tollgate_local.resources import CreatedStack

SMALL = "mock/chat-small"  # a 512-token context window, 64 tokens of answer


@pytest.fixture(autouse=True)
def metering(stack: CreatedStack) -> Iterator[Metering]:
    """After every test, every org's ledger adds up (balance = sum of entries, no lot below 0)."""
    yield from metering_on_stack(stack)


@pytest.fixture
def org(api: Api, admin_key: str, make_tenant: Any) -> Tenant:
    tenant: Tenant = make_tenant("Talkers")
    assert grant(api, admin_key, tenant.org_id, 100).status == 201
    return tenant


def start(api: Api, key: str, model: str = SMALL, **extra: Any) -> dict[str, Any]:
    response = api.post("/v1/conversations", key=key, json_body={"model": model, **extra})
    assert response.status == 201, response.body
    created: dict[str, Any] = response.json()
    return created


def say(api: Api, key: str, conversation_id: str, content: str, **extra: Any) -> ApiResponse:
    return api.post(
        f"/v1/conversations/{conversation_id}/messages", key=key, json_body={"content": content, **extra}
    )


def all_messages(api: Api, key: str, conversation_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    url = f"/v1/conversations/{conversation_id}?limit=7"
    while True:
        body = api.get(url, key=key).json()
        found.extend(body["messages"])
        if body["next_cursor"] is None:
            return found
        url = f"/v1/conversations/{conversation_id}?limit=7&cursor={body['next_cursor']}"


def records(api: Api, key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    url = "/v1/requests?limit=100"
    while True:
        body = api.get(url, key=key).json()
        found.extend(body["data"])
        if body["next_cursor"] is None:
            return found
        url = f"/v1/requests?limit=100&cursor={body['next_cursor']}"


def test_a_long_conversation_on_a_small_model_keeps_answering_dropping_the_oldest_turns(
    api: Api, admin_key: str, org: Tenant
) -> None:
    # Given a conversation with a system message on a model of 512 tokens
    conversation = start(api, org.member_key, system="Answer in one sentence.")
    cid = conversation["id"]
    before = balance_of(api, admin_key, org.org_id)
    # When 14 turns are sent (far more than 512 tokens of history)
    turns = []
    for number in range(14):
        response = say(api, org.member_key, cid, f"Question {number}: what does a toll gate do for a road?")
        assert response.status == 201, response.body
        turns.append(response)
    # Then every turn answered, and once the window was full the oldest turns were left out
    bodies = [t.json() for t in turns]
    assert all(b["message"]["role"] == "assistant" and b["message"]["content"] for b in bodies)
    assert bodies[0]["history_sent"] == 0
    assert bodies[-1]["history_dropped"] > 0
    assert bodies[-1]["history_sent"] % 2 == 0  # whole turns only
    assert [b["message_count"] for b in bodies] == [2 * (n + 1) for n in range(14)]
    # And each turn is one generation record, whose prompt fits the window less the answer, starts
    # with the system message and, late in the conversation, no longer holds the first question
    by_id = {r["id"]: r for r in records(api, org.owner_key)}
    assert len(by_id) == 14
    for turn in turns:
        record = by_id[turn.header("X-Request-Id") or ""]
        assert record["status"] == "completed"
        assert record["params"]["metadata"]["conversation_id"] == cid
        assert record["usage"]["input_tokens"] + 64 <= 512
        assert record["prompt"][0] == {"role": "system", "content": "Answer in one sentence."}
    last = by_id[turns[-1].header("X-Request-Id") or ""]
    assert not any("Question 0:" in m["content"] for m in last["prompt"])
    assert last["prompt"][-1]["content"].startswith("Question 13:")
    # And each turn is one charge: the balance fell by the sum of what each turn says it cost,
    # and each request's ledger entries add up to its own charge
    charged = [Decimal(t.header("X-Credits-Charged") or "") for t in turns]
    assert all(c > 0 for c in charged)
    assert before - balance_of(api, admin_key, org.org_id) == sum(charged)
    entries = assert_ledger_matches_balance(api, admin_key, org.org_id)
    for turn, cost in zip(turns, charged, strict=True):
        assert (
            sum(Decimal(e["amount"]) for e in entries if e["reference"] == turn.header("X-Request-Id"))
            == -cost
        )
    # And the conversation holds all 28 messages, in order, each naming its request
    messages = all_messages(api, org.member_key, cid)
    assert [m["seq"] for m in messages] == list(range(1, 29))
    assert [m["role"] for m in messages] == ["user", "assistant"] * 14
    assert [m["request_id"] for m in messages[::2]] == [t.header("X-Request-Id") for t in turns]
    assert messages[0]["content"].startswith("Question 0:")


def test_a_failed_turn_charges_nothing_appends_nothing_and_the_conversation_goes_on(
    api: Api, admin_key: str, org: Tenant
) -> None:
    cid = start(api, org.member_key)["id"]
    assert say(api, org.member_key, cid, "First question?").status == 201
    before = balance_of(api, admin_key, org.org_id)
    # When the provider fails on the second turn
    failed = say(api, org.member_key, cid, "Second question?", metadata={"mock": {"fail": "error"}})
    # Then it is a provider error, nothing is charged, nothing is appended
    assert_problem(failed, 502, "provider_error")
    assert balance_of(api, admin_key, org.org_id) == before
    assert api.get(f"/v1/conversations/{cid}", key=org.member_key).json()["message_count"] == 2
    record = api.get(f"/v1/requests/{failed.header('X-Request-Id')}", key=org.member_key).json()
    assert record["status"] == "failed"
    # And the same message can be sent again: the turn is not left claimed
    again = say(api, org.member_key, cid, "Second question?")
    assert again.status == 201, again.body
    assert again.json()["message_count"] == 4


def test_a_message_that_cannot_fit_the_window_is_422_and_changes_nothing(
    api: Api, admin_key: str, org: Tenant
) -> None:
    cid = start(api, org.member_key)["id"]
    before = balance_of(api, admin_key, org.org_id)
    refused = say(api, org.member_key, cid, "toll " * 600)
    problem = assert_problem(refused, 422, "invalid_request")
    assert problem["errors"][0]["field"] == "content"
    assert balance_of(api, admin_key, org.org_id) == before
    assert say(api, org.member_key, cid, "A short one.").status == 201


def test_two_turns_at_once_cannot_interleave(api: Api, admin_key: str, org: Tenant) -> None:
    # Given a conversation whose turn is being answered right now (claimed by another request)
    cid = start(api, org.member_key)["id"]
    store = DynamoConversationStore(services.table())
    conversation = store.get(org.org_id, cid)
    assert conversation is not None
    now = datetime.now(UTC)
    store.claim_turn(conversation, "request-in-flight", now, now - timedelta(seconds=90))
    before = balance_of(api, admin_key, org.org_id)
    # When another message comes
    busy = say(api, org.member_key, cid, "Me too?")
    # Then it is refused before anything is charged, with a hint to retry
    assert_problem(busy, 409, "conflict")
    assert busy.header("Retry-After") == "2"
    assert balance_of(api, admin_key, org.org_id) == before
    assert_problem(api.delete(f"/v1/conversations/{cid}", key=org.member_key), 409, "conflict")
    # When the claim is older than any request can live (its request died)
    store.release_turn(conversation, "request-in-flight")
    store.claim_turn(
        conversation, "request-that-died", now - timedelta(minutes=5), now - timedelta(minutes=7)
    )
    # Then the next turn takes over
    assert say(api, org.member_key, cid, "Now?").status == 201


def test_the_user_message_is_kept_as_the_provider_got_it(api: Api, org: Tenant) -> None:
    # Given the default content policy (card numbers are redacted)
    cid = start(api, org.member_key, model="mock/chat")["id"]
    # When a message holds a card number
    turn = say(api, org.member_key, cid, "My card is 4111 1111 1111 1111, is that safe?")
    assert turn.status == 201, turn.body
    # Then neither the provider nor the conversation ever held it
    kept = turn.json()["user_message"]["content"]
    assert "4111" not in kept
    record = api.get(f"/v1/requests/{turn.header('X-Request-Id')}", key=org.member_key).json()
    assert record["prompt"][-1]["content"] == kept
    assert all_messages(api, org.member_key, cid)[0]["content"] == kept


def test_a_turn_answered_from_the_cache_is_appended_and_costs_nothing(api: Api, org: Tenant) -> None:
    first = start(api, org.member_key, model="mock/chat")["id"]
    second = start(api, org.member_key, model="mock/chat")["id"]
    assert say(api, org.member_key, first, "Same opening line.").header("X-Cache") == "MISS"
    hit = say(api, org.member_key, second, "Same opening line.")
    assert hit.status == 201
    assert (hit.header("X-Cache"), Decimal(hit.header("X-Credits-Charged") or "")) == ("HIT", Decimal(0))
    assert hit.json()["cached"] is True
    assert api.get(f"/v1/conversations/{second}", key=org.member_key).json()["message_count"] == 2


def test_a_replayed_turn_is_answered_once(api: Api, admin_key: str, org: Tenant) -> None:
    cid = start(api, org.member_key)["id"]
    headers = {"Idempotency-Key": "turn-1"}
    url = f"/v1/conversations/{cid}/messages"
    first = api.post(url, key=org.member_key, json_body={"content": "Once?"}, headers=headers)
    balance = balance_of(api, admin_key, org.org_id)
    again = api.post(url, key=org.member_key, json_body={"content": "Once?"}, headers=headers)
    assert (first.status, again.status) == (201, 201)
    assert again.header("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert balance_of(api, admin_key, org.org_id) == balance
    assert api.get(f"/v1/conversations/{cid}", key=org.member_key).json()["message_count"] == 2


# -- who sees what -------------------------------------------------------------------------------


def second_member(api: Api, admin_key: str, org: Tenant) -> str:
    made = api.post(
        f"/v1/orgs/{org.org_id}/keys",
        key=admin_key,
        json_body={"name": "member two", "user": "member-2", "role": "member"},
    )
    assert made.status == 201, made.body
    return str(made.json()["key"])


def test_another_orgs_conversation_is_not_found(
    api: Api, admin_key: str, org: Tenant, make_tenant: Any
) -> None:
    cid = start(api, org.member_key)["id"]
    other: Tenant = make_tenant("Strangers")
    for key in (other.owner_key, other.member_key, admin_key):
        assert_problem(api.get(f"/v1/conversations/{cid}", key=key), 404, "not_found")
        assert_problem(api.delete(f"/v1/conversations/{cid}", key=key), 404, "not_found")
        assert cid not in [c["id"] for c in api.get("/v1/conversations", key=key).json()["data"]]
    assert_problem(say(api, other.member_key, cid, "Hi?"), 404, "not_found")
    assert_problem(api.get("/v1/conversations/conv_nope", key=org.member_key), 404, "not_found")


def test_members_see_their_own_owners_the_orgs_and_only_its_user_continues_one(
    api: Api, admin_key: str, org: Tenant
) -> None:
    mine = start(api, org.member_key)["id"]
    other_member = second_member(api, admin_key, org)
    theirs = start(api, other_member)["id"]
    # A member lists and reads only its own
    assert [c["id"] for c in api.get("/v1/conversations", key=org.member_key).json()["data"]] == [mine]
    assert_problem(api.get(f"/v1/conversations/{theirs}", key=org.member_key), 404, "not_found")
    assert_problem(say(api, org.member_key, theirs, "Hi?"), 404, "not_found")
    # The owner sees both, but does not speak in a member's conversation
    listed = {c["id"] for c in api.get("/v1/conversations", key=org.owner_key).json()["data"]}
    assert listed == {mine, theirs}
    assert api.get(f"/v1/conversations/{theirs}", key=org.owner_key).status == 200
    assert_problem(say(api, org.owner_key, theirs, "Hi?"), 403, "forbidden")


def test_creating_needs_an_orgs_key_and_a_chat_model(api: Api, admin_key: str, org: Tenant) -> None:
    assert_problem(api.post("/v1/conversations", key=admin_key, json_body={"model": SMALL}), 403, "forbidden")
    for model in ("mock/embed", "nobody/nothing"):
        problem = assert_problem(
            api.post("/v1/conversations", key=org.member_key, json_body={"model": model}),
            422,
            "invalid_request",
        )
        assert problem["errors"][0]["field"] == "model"
    alias = start(api, org.member_key, model="fast-chat")
    assert say(api, org.member_key, alias["id"], "Through an alias?").status == 201


def test_deleting_a_conversation_removes_its_messages_and_keeps_its_records(
    api: Api, org: Tenant, stack: CreatedStack
) -> None:
    cid = start(api, org.member_key)["id"]
    turn = say(api, org.member_key, cid, "Remember me?")
    assert api.delete(f"/v1/conversations/{cid}", key=org.member_key).status == 204
    assert_problem(api.get(f"/v1/conversations/{cid}", key=org.member_key), 404, "not_found")
    table = services.table()
    left, _ = table.query("pk = :pk", values={":pk": conversation_pk(org.org_id, cid)})
    assert left == []
    assert api.get(f"/v1/requests/{turn.header('X-Request-Id')}", key=org.member_key).status == 200


def test_listing_pages_newest_first_with_a_cursor_bound_to_the_org(
    api: Api, org: Tenant, make_tenant: Any
) -> None:
    ids = [start(api, org.member_key, title=f"Talk {n}")["id"] for n in range(3)]
    first = api.get("/v1/conversations?limit=2", key=org.member_key).json()
    second = api.get(f"/v1/conversations?limit=2&cursor={first['next_cursor']}", key=org.member_key).json()
    assert [c["id"] for c in first["data"] + second["data"]] == ids[::-1]
    other: Tenant = make_tenant("Strangers")
    assert_problem(
        api.get(f"/v1/conversations?limit=2&cursor={first['next_cursor']}", key=other.member_key),
        400,
        "invalid_request",
    )
