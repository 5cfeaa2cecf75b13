"""The request path's hot path through DynamoDB (moto): what it costs in AWS calls, and that
the shortcuts never cost correctness.

- A cache hit is counted and charged in one step (``charge``): one write when it is free.
- Reserve and settle start from what the process already knows (the account it last wrote, the
  caller's org context, the reservation it made) with no read; a stale start is rejected by the
  commit's conditions and recomputed from a read, and a refusal is only ever made on a read.
- What another store stages with a settlement (the request's record) is written in the same
  transaction, or not at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_metering_support import START, Metering, metering_on_stack
from tollgate import services
from tollgate.aws.dynamodb import DynamoStagedWrites, Write, put
from tollgate.aws.metering_store import DynamoMeteringStore
from tollgate.errors import InsufficientCredits, RateLimited
from tollgate.identity.models import Caller, OrgContext, Role
from tollgate.metering.models import EntryKind, ReservationStatus, Usage
from tollgate.metering.ports import StagedWriteRefused
from tollgate.metering.pricing import CacheHitRule, default_pricing
from tollgate.metering.service import MeteringService
from tollgate.plans import load_plans
from tollgate_local.resources import CreatedStack

ORG = "org_hot"
ESTIMATE = Usage(provider="mock", model="chat", input_tokens=2_000, output_tokens=8_000)  # 2,700 units
ACTUAL = Usage(provider="mock", model="chat", input_tokens=2_000, output_tokens=500)  # 450 units
HIT = Usage(provider="mock", model="chat", input_tokens=2_000, output_tokens=500, cache_hit=True)
HOURLY_LIMIT = 3
OVERRIDES = ({"scope": "org", "metric": "requests", "window": "hour", "max": HOURLY_LIMIT},)


@pytest.fixture
def metering(stack: CreatedStack) -> Iterator[Metering]:
    yield from metering_on_stack(stack)


@pytest.fixture
def calls() -> Iterator[Counter[str]]:
    """Every DynamoDB call made, by operation name."""
    seen: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        seen[event_name.split(".")[-1]] += 1

    events = services.table().client.meta.events
    events.register("before-call.dynamodb", count)
    yield seen
    events.unregister("before-call.dynamodb", count)


def org_caller(user: str = "ann") -> Caller:
    """A caller as the authorizer makes it: with the org's context."""
    context = OrgContext(plan="starter", limit_overrides=OVERRIDES)
    return Caller("key_hot", user, Role.MEMBER, org_id=ORG, plan="starter", org=context)


def funded(m: Metering, credits: int = 1_000_000) -> None:
    m.create_org(ORG)
    m.service.grant(ORG, credits, operation_id="seed")


def another_process(m: Metering) -> MeteringService:
    """A second Lambda container: the same table, its own memory."""
    return MeteringService(DynamoMeteringStore(services.table()), default_pricing(), load_plans(), m.clock)


def entry_kinds(m: Metering) -> list[EntryKind]:
    return [e.kind for e in m.store.all_entries(ORG)]


def test_a_free_cache_hit_is_one_write_that_counts_the_request_and_moves_no_credit(
    metering: Metering, calls: Counter[str]
) -> None:
    # Given a funded org
    funded(metering)
    entries_before = entry_kinds(metering)
    calls.clear()
    # When a cache hit is charged (free by default)
    settlement = metering.service.charge(org_caller(), "chat", HIT, "hit_1")
    # Then it took one write and no read, counted one request, charged nothing
    assert calls == Counter({"TransactWriteItems": 1})
    assert (settlement.charged_credits, settlement.actual.cost_micro_usd) == (0, 0)
    key = f"C#h{START:%Y%m%d%H}#requests#org#*#*#{ORG}"
    assert metering.counter(ORG, key) == 1
    assert entry_kinds(metering) == entries_before
    assert metering.service.reservation(ORG, "hit_1").status is ReservationStatus.SETTLED
    # And the same request id again charges and counts nothing more
    assert metering.service.charge(org_caller(), "chat", HIT, "hit_1") == settlement
    assert metering.counter(ORG, key) == 1


def test_a_priced_cache_hit_takes_its_price_once(metering: Metering) -> None:
    # Given a feature whose cache hits cost 0.2 credit
    funded(metering)
    rule = (
        default_pricing()
        .features.get("chat")
        .model_copy(update={"cache_hit": CacheHitRule(rule="flat", credits=2_000)})
    )
    # When a hit is charged twice under one id
    first = metering.service.charge(org_caller(), rule, HIT, "hit_1")
    again = metering.service.charge(org_caller(), rule, HIT, "hit_1")
    # Then 2,000 units left the balance once, as a hold captured in full
    assert first == again
    assert first.charged_credits == 2_000
    assert metering.service.balance(ORG).balance == 1_000_000 - 2_000
    assert entry_kinds(metering)[-2:] == [EntryKind.HOLD, EntryKind.CAPTURE]


def test_a_cache_hit_over_a_limit_is_refused_and_counts_nothing(metering: Metering) -> None:
    # Given an org at its hourly request limit
    funded(metering)
    for number in range(HOURLY_LIMIT):
        metering.service.charge(org_caller(), "chat", HIT, f"hit_{number}")
    # When one more hit comes
    with pytest.raises(RateLimited):
        metering.service.charge(org_caller(), "chat", HIT, "hit_over")
    # Then nothing of it exists
    key = f"C#h{START:%Y%m%d%H}#requests#org#*#*#{ORG}"
    assert metering.counter(ORG, key) == HOURLY_LIMIT
    assert metering.store.load(ORG, reservation_id="hit_over").reservation is None


def test_a_warm_reserve_and_settle_are_one_write_each(metering: Metering, calls: Counter[str]) -> None:
    # Given a process that has already written this org's account
    funded(metering)
    metering.service.reserve(org_caller(), "chat", ESTIMATE, "warm_up")
    metering.service.settle(ORG, "warm_up", ACTUAL)
    calls.clear()
    # When the next request reserves and settles
    metering.service.reserve(org_caller(), "chat", ESTIMATE, "req_1")
    metering.service.settle(ORG, "req_1", ACTUAL)
    # Then that was two writes and no read, and the money is right
    assert calls == Counter({"TransactWriteItems": 2})
    assert metering.service.balance(ORG).balance == 1_000_000 - 2 * 450


def test_another_processes_moves_make_the_stale_start_read_and_recompute(metering: Metering) -> None:
    # Given two processes serving one org, the first one warm
    funded(metering)
    first, second = metering.service, another_process(metering)
    first.reserve(org_caller(), "chat", ESTIMATE, "a_1")
    # When the second one moves the account in between
    second.reserve(org_caller("bob"), "chat", ESTIMATE, "b_1")
    second.settle(ORG, "b_1", ACTUAL)
    # Then the first one's settle and next reserve still land, from a read
    first.settle(ORG, "a_1", ACTUAL)
    first.reserve(org_caller(), "chat", ESTIMATE, "a_2")
    first.settle(ORG, "a_2", ACTUAL)
    assert first.raced >= 1
    assert metering.service.balance(ORG).balance == 1_000_000 - 3 * 450
    assert entry_kinds(metering).count(EntryKind.CAPTURE) == 3  # the audit after the test adds it up


def test_a_shortage_seen_on_a_stale_account_is_checked_on_a_read_before_refusing(metering: Metering) -> None:
    # Given a process that knows the org with credits for less than one estimate
    funded(metering, credits=1_000)
    first, second = metering.service, another_process(metering)
    first.charge(org_caller(), "chat", HIT, "warm_up")
    first.reserve(org_caller(), "chat", Usage(provider="mock", model="chat", input_tokens=10), "small")
    # When another process grants credits, and the first is asked for more than it thinks is there
    second.grant(ORG, 10_000, operation_id="top-up")
    reservation = first.reserve(org_caller(), "chat", ESTIMATE, "big")
    # Then it was not refused: the shortage was checked against a read
    assert reservation.held_credits == 2_700
    # And a real shortage is still refused
    with pytest.raises(InsufficientCredits):
        first.reserve(org_caller(), "chat", Usage(cost_micro_usd=10**9), "huge")


def _marker(request_id: str) -> DynamoStagedWrites:
    return DynamoStagedWrites(
        (
            Write(
                "Put",
                item={"pk": f"TEST#{request_id}", "sk": "RECORD", "note": "written with the settlement"},
            ),
        )
    )


def test_what_is_attached_to_a_settlement_is_written_in_its_transaction(
    metering: Metering, calls: Counter[str]
) -> None:
    funded(metering)
    metering.service.reserve(org_caller(), "chat", ESTIMATE, "req_1")
    calls.clear()
    settlement = metering.service.settle(ORG, "req_1", ACTUAL, attach=lambda settled: _marker("req_1"))
    assert calls == Counter({"TransactWriteItems": 1})
    assert settlement.charged_credits == 450
    assert services.table().get("TEST#req_1", "RECORD") is not None


def test_a_refused_attached_write_takes_the_settlement_down_with_it(metering: Metering) -> None:
    # Given a held reservation, and an attached write that refuses its condition
    funded(metering)
    metering.service.reserve(org_caller(), "chat", ESTIMATE, "req_1")
    services.table().put({"pk": "TEST#req_1", "sk": "RECORD"})
    refused = DynamoStagedWrites(
        (put({"pk": "TEST#req_1", "sk": "RECORD", "note": "again"}, "attribute_not_exists(pk)"),)
    )
    # When the settlement carries it
    with pytest.raises(StagedWriteRefused):
        metering.service.settle(ORG, "req_1", ACTUAL, attach=lambda settled: refused)
    # Then nothing moved: still held, nothing charged, and it can still be settled
    assert metering.service.reservation(ORG, "req_1").status is ReservationStatus.HELD
    assert metering.service.balance(ORG).held == 2_700
    assert metering.service.settle(ORG, "req_1", ACTUAL).charged_credits == 450
