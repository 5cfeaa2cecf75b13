"""The credit ledger through DynamoDB (moto): purchases, refunds, grants, renewals, expiry, alerts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.test_metering_support import START, Metering, metering_on_stack
from tollgate import services
from tollgate.aws.identity_store import DynamoIdentityStore
from tollgate.errors import Conflict, InvalidRequest, NotFound
from tollgate.identity.models import Org
from tollgate.metering.models import AlertKind, EntryKind, LotKind, PurchaseStatus, Usage
from tollgate.metering.pricing import FeatureRule
from tollgate_local.resources import CreatedStack


@pytest.fixture
def metering(stack: CreatedStack) -> Iterator[Metering]:
    yield from metering_on_stack(stack)


ORG = "org_credits"
CREDIT = 10_000


def spend(m: Metering, credits: int, reference: str) -> None:
    """Reserve and settle a call of a template-declared flat feature costing ``credits`` units."""
    feature = FeatureRule(name="spend", rule="flat", credits=credits)
    m.service.reserve(m.caller(ORG, plan="enterprise"), feature, Usage(), reference)
    assert m.service.settle(ORG, reference, Usage()).charged_credits == credits


def entries(m: Metering, kind: EntryKind) -> list[int]:
    return [e.amount for e in m.store.all_entries(ORG) if e.kind is kind]


def test_a_purchase_completes_once_even_when_completed_three_times(metering: Metering) -> None:
    # Given a pending purchase of 100 credits with a 20-credit bonus
    pending = metering.service.create_purchase(
        ORG, "pur_1", "starter-pack", 100 * CREDIT, 20 * CREDIT, 9_000_000
    )
    assert pending.status is PurchaseStatus.PENDING
    assert metering.service.balance(ORG).balance == 0

    # When the payment webhook arrives three times
    results = [metering.service.complete_purchase(ORG, "pur_1", external_reference="evt_1") for _ in range(3)]

    # Then the credits arrived once, as a purchased lot and a bonus lot expiring in 6 months
    assert {r.status for r in results} == {PurchaseStatus.COMPLETED}
    assert results[0] == results[1] == results[2]
    balance = metering.service.balance(ORG)
    assert balance.balance == 120 * CREDIT
    assert sorted((lot.kind, lot.remaining) for lot in balance.lots) == [
        (LotKind.BONUS, 20 * CREDIT),
        (LotKind.PURCHASED, 100 * CREDIT),
    ]
    assert {lot.expires_at for lot in balance.lots} == {datetime(2025, 9, 10, 14, 20, tzinfo=UTC)}
    assert entries(metering, EntryKind.PURCHASE) == [100 * CREDIT]
    assert entries(metering, EntryKind.BONUS) == [20 * CREDIT]
    # And it can no longer fail, and the same purchase id cannot be created anew
    with pytest.raises(Conflict):
        metering.service.fail_purchase(ORG, "pur_1")
    assert metering.service.create_purchase(ORG, "pur_1", "other", 1, 0, 0).package == "starter-pack"


def test_a_failed_purchase_brings_nothing_and_cannot_complete(metering: Metering) -> None:
    metering.service.create_purchase(ORG, "pur_1", "pack", 50 * CREDIT, 0, 1_000_000)
    assert metering.service.fail_purchase(ORG, "pur_1").status is PurchaseStatus.FAILED
    assert metering.service.fail_purchase(ORG, "pur_1").status is PurchaseStatus.FAILED
    with pytest.raises(Conflict):
        metering.service.complete_purchase(ORG, "pur_1")
    assert metering.service.balance(ORG).balance == 0


def test_a_refund_takes_back_only_the_unspent_credits_of_that_purchase(metering: Metering) -> None:
    # Given purchase 1 (100 + 20 bonus) and, later, purchase 2 (50)
    metering.service.create_purchase(ORG, "pur_1", "pack", 100 * CREDIT, 20 * CREDIT, 9_000_000)
    metering.service.complete_purchase(ORG, "pur_1")
    metering.clock.set(START + timedelta(minutes=5))
    metering.service.create_purchase(ORG, "pur_2", "pack", 50 * CREDIT, 0, 4_000_000)
    metering.service.complete_purchase(ORG, "pur_2")
    # And 45 credits spent: the bonus (20) first, then 25 of purchase 1 (the older purchased lot)
    spend(metering, 45 * CREDIT, "req_1")

    # When purchase 1 is refunded, twice
    refunded = metering.service.refund_purchase(ORG, "pur_1")
    assert metering.service.refund_purchase(ORG, "pur_1") == refunded

    # Then only its 75 unspent credits leave, once; purchase 2 is whole
    assert refunded.status is PurchaseStatus.REFUNDED
    assert refunded.refunded_credits == 75 * CREDIT
    assert entries(metering, EntryKind.REFUND) == [-75 * CREDIT]
    balance = metering.service.balance(ORG)
    assert balance.balance == 50 * CREDIT
    assert [(lot.reference, lot.remaining) for lot in balance.lots] == [("pur_2", 50 * CREDIT)]


def test_credits_held_when_their_purchase_is_refunded_leave_when_released(metering: Metering) -> None:
    # Given a 10-credit purchase, 6 of it held by a request in flight
    metering.service.create_purchase(ORG, "pur_1", "pack", 10 * CREDIT, 0, 1_000_000)
    metering.service.complete_purchase(ORG, "pur_1")
    metering.service.reserve(metering.caller(ORG), "chat", Usage(cost_micro_usd=40_000), "req_1")

    # When the purchase is refunded (4 unspent leave) and the request then fails
    assert metering.service.refund_purchase(ORG, "pur_1").refunded_credits == 4 * CREDIT
    released = metering.service.release(ORG, "req_1")

    # Then the 6 held credits do not come back to life
    assert (released.released_credits, released.forfeited_credits) == (0, 6 * CREDIT)
    assert metering.service.balance(ORG).balance == 0
    assert entries(metering, EntryKind.REFUND) == [-4 * CREDIT, -6 * CREDIT]


def test_purchases_of_another_org_are_not_found(metering: Metering) -> None:
    metering.service.create_purchase(ORG, "pur_1", "pack", CREDIT, 0, 100)
    with pytest.raises(NotFound):
        metering.service.purchase("org_other", "pur_1")
    with pytest.raises(NotFound):
        metering.service.complete_purchase("org_other", "pur_1")
    assert metering.service.purchases("org_other").purchases == ()
    assert [p.purchase_id for p in metering.service.purchases(ORG).purchases] == ["pur_1"]


def test_a_grant_is_idempotent_by_operation_id(metering: Metering) -> None:
    # When the same grant is sent twice
    first = metering.service.grant(ORG, 30 * CREDIT, kind=LotKind.PROMO, operation_id="op_1", note="welcome")
    second = metering.service.grant(ORG, 30 * CREDIT, kind=LotKind.PROMO, operation_id="op_1", note="welcome")

    # Then it granted once
    assert (first.created, second.created, second.lot_id) == (True, False, first.lot_id)
    assert metering.service.balance(ORG).balance == 30 * CREDIT
    with pytest.raises(InvalidRequest):
        metering.service.grant(ORG, 0, operation_id="op_2")
    with pytest.raises(InvalidRequest):
        metering.service.grant(ORG, CREDIT, expires_at=START - timedelta(days=1), operation_id="op_3")


def _org_with_anchor(day: int) -> None:
    DynamoIdentityStore(services.table()).put_org(
        Org(org_id=ORG, name="Anchored", plan="starter", created_at=START, billing_anchor_day=day)
    )


def test_renewal_run_twice_renews_once_and_the_previous_cycle_lot_expires(metering: Metering) -> None:
    # Given a starter org (100 credits a month) billed on the 15th
    _org_with_anchor(15)
    cycle_start = datetime(2025, 2, 15, tzinfo=UTC)
    assert metering.service.current_cycle(ORG) == (cycle_start, datetime(2025, 3, 15, tzinfo=UTC))

    # When the scheduler renews the cycle twice
    first = metering.service.renew_subscription(ORG, cycle_start)
    second = metering.service.renew_subscription(ORG, cycle_start)

    # Then it renewed once, with a subscription lot ending with the cycle
    assert (first.renewed, second.renewed, second.lot_id) == (True, False, first.lot_id)
    assert entries(metering, EntryKind.SUBSCRIPTION_RENEWAL) == [100 * CREDIT]
    (lot,) = metering.service.balance(ORG).lots
    assert (lot.kind, lot.expires_at) == (LotKind.SUBSCRIPTION, datetime(2025, 3, 15, tzinfo=UTC))

    # When 30 credits are spent and the next cycle is renewed (late, on the 16th)
    spend(metering, 30 * CREDIT, "req_1")
    metering.clock.set(datetime(2025, 3, 16, 3, 0, tzinfo=UTC))
    renewed = metering.service.renew_subscription(ORG, datetime(2025, 3, 15, tzinfo=UTC))

    # Then the 70 left of the previous cycle expired, and the new cycle's 100 arrived
    assert renewed.renewed
    assert entries(metering, EntryKind.EXPIRY) == [-70 * CREDIT]
    assert metering.service.balance(ORG).balance == 100 * CREDIT
    # And a time that is not a cycle start is refused
    with pytest.raises(InvalidRequest):
        metering.service.renew_subscription(ORG, datetime(2025, 3, 16, tzinfo=UTC))


def test_subscription_credits_are_spent_before_purchased_ones(metering: Metering) -> None:
    # Given purchased credits bought first, then the subscription renewed
    _org_with_anchor(1)
    metering.service.create_purchase(ORG, "pur_1", "pack", 50 * CREDIT, 10 * CREDIT, 1)
    metering.service.complete_purchase(ORG, "pur_1")
    metering.service.grant(
        ORG, 5 * CREDIT, kind=LotKind.PROMO, operation_id="promo", expires_at=START + timedelta(days=60)
    )
    metering.service.renew_subscription(ORG, datetime(2025, 3, 1, tzinfo=UTC))

    # When 112 credits are spent
    spend(metering, 112 * CREDIT, "req_1")

    # Then the subscription (100), then promo (5), then bonus (7 of 10) paid; purchased is untouched
    remaining = {lot.kind: lot.remaining for lot in metering.service.balance(ORG).lots}
    assert remaining == {LotKind.BONUS: 3 * CREDIT, LotKind.PURCHASED: 50 * CREDIT}


def test_lots_expire_on_time_even_before_the_scheduler_runs(metering: Metering) -> None:
    # Given a promo lot expiring tomorrow and a grant that never expires
    metering.service.grant(
        ORG, 8 * CREDIT, kind=LotKind.PROMO, operation_id="promo", expires_at=START + timedelta(days=1)
    )
    metering.service.grant(ORG, 2 * CREDIT, operation_id="grant")

    # When two days pass, then a reservation can only use the grant
    metering.clock.set(START + timedelta(days=2))
    availability = metering.service.availability(metering.caller(ORG), "color_analysis", Usage())
    assert availability.available_credits == 2 * CREDIT

    # And the scheduler's expiry run, twice, records one expiry entry and one expiry alert
    assert [e.amount for e in metering.service.expire_lots(ORG)] == [-8 * CREDIT]
    assert metering.service.expire_lots(ORG) == []
    assert [a.kind for a in metering.service.alerts(ORG)].count(AlertKind.EXPIRY) == 1
    assert metering.service.balance(ORG).balance == 2 * CREDIT


def test_an_alert_fires_once_per_crossing_and_is_published_once(metering: Metering) -> None:
    # Given a 100-credit purchase (thresholds: 20 and 10 credits, and 0)
    metering.service.create_purchase(ORG, "pur_1", "pack", 100 * CREDIT, 0, 1)
    metering.service.complete_purchase(ORG, "pur_1")

    # When spending takes the balance to 15, then 12, then a hold to 11 is released again
    spend(metering, 85 * CREDIT, "req_1")
    spend(metering, 3 * CREDIT, "req_2")
    metering.service.reserve(metering.caller(ORG), "chat", Usage(cost_micro_usd=6_666), "req_3")
    metering.service.release(ORG, "req_3")

    # Then exactly one alert: the 20 % one, recorded when it was crossed
    alerts = metering.service.alerts(ORG)
    assert [(a.kind, a.threshold_percent, a.balance) for a in alerts] == [
        (AlertKind.LOW_BALANCE, 20, 15 * CREDIT)
    ]

    # When spending crosses 10 % and reaches 0
    spend(metering, 12 * CREDIT, "req_4")

    # Then the 10 % and 0 alerts fire once each
    assert sorted(a.threshold_percent or 0 for a in metering.service.alerts(ORG)) == [0, 10, 20]
    # And the publisher sees each once, until it marks them published
    pending = metering.service.unpublished_alerts()
    assert len(pending) == 3
    for alert in pending:
        metering.service.mark_alert_published(alert.org_id, alert.alert_id)
    assert metering.service.unpublished_alerts() == []
    assert all(a.published for a in metering.service.alerts(ORG))


def test_transactions_are_paginated_newest_first(metering: Metering) -> None:
    # Given 5 grants
    for number in range(5):
        metering.service.grant(ORG, (number + 1) * CREDIT, operation_id=f"op_{number}")

    # When read two at a time
    first = metering.service.transactions(ORG, limit=2)
    second = metering.service.transactions(ORG, cursor=first.next_cursor, limit=2)
    third = metering.service.transactions(ORG, cursor=second.next_cursor, limit=2)

    # Then every entry comes once, newest first, with its exact balance after
    sequences = [e.sequence for page in (first, second, third) for e in page.entries]
    assert sequences == [5, 4, 3, 2, 1]
    assert third.next_cursor is None
    assert first.entries[0].balance_after == 15 * CREDIT
    with pytest.raises(InvalidRequest):
        metering.service.transactions(ORG, cursor="not-a-cursor")


def test_an_adjustment_never_takes_the_balance_below_zero(metering: Metering) -> None:
    metering.service.grant(ORG, 3 * CREDIT, operation_id="seed")
    taken = metering.service.adjust(ORG, -5 * CREDIT, "fix_1", "billing correction")
    assert taken is not None
    assert taken.amount == -3 * CREDIT
    assert metering.service.adjust(ORG, -5 * CREDIT, "fix_1", "billing correction") is None
    assert metering.service.balance(ORG).balance == 0
