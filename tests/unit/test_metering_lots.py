"""Spending order across lots, and allocation that never takes a lot below zero."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tollgate.metering.lots import (
    DEFAULT_PRIORITY,
    CreditLot,
    CreditShortage,
    LotStatus,
    allocate,
    spending_order,
)
from tollgate.metering.models import LotDraw, LotKind

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def lot(
    lot_id: str,
    kind: LotKind,
    remaining: int,
    *,
    expires_in_days: int | None = 30,
    created_days_ago: int = 1,
    status: LotStatus = LotStatus.OPEN,
) -> CreditLot:
    return CreditLot(
        lot_id=lot_id,
        kind=kind,
        priority=DEFAULT_PRIORITY[kind],
        original=remaining,
        remaining=remaining,
        held=0,
        created_at=NOW - timedelta(days=created_days_ago),
        expires_at=NOW + timedelta(days=expires_in_days) if expires_in_days is not None else None,
        status=status,
    )


def test_subscription_credits_are_spent_first_then_promo_bonus_and_purchased_last() -> None:
    # Given one lot of each kind, the purchased one expiring soonest and the subscription newest
    lots = [
        lot("purchased", LotKind.PURCHASED, 10_000, expires_in_days=2, created_days_ago=90),
        lot("bonus", LotKind.BONUS, 10_000, expires_in_days=100),
        lot("promo", LotKind.PROMO, 10_000, expires_in_days=50),
        lot("subscription", LotKind.SUBSCRIPTION, 10_000, expires_in_days=20, created_days_ago=0),
    ]

    # When 35,000 units are spent
    draws = allocate(lots, 35_000, NOW)

    # Then priority wins over expiry and age: subscription, promo, bonus, and purchased last
    assert draws == (
        LotDraw("subscription", -10_000),
        LotDraw("promo", -10_000),
        LotDraw("bonus", -10_000),
        LotDraw("purchased", -5_000),
    )


def test_same_priority_spends_the_soonest_expiry_first_then_the_oldest_and_never_expiring_last() -> None:
    # Given three purchased lots: one never expires, two expire on the same day at different ages
    lots = [
        lot("forever", LotKind.PURCHASED, 100, expires_in_days=None, created_days_ago=300),
        lot("late-young", LotKind.PURCHASED, 100, expires_in_days=40, created_days_ago=1),
        lot("late-old", LotKind.PURCHASED, 100, expires_in_days=40, created_days_ago=9),
        lot("soon", LotKind.PURCHASED, 100, expires_in_days=3, created_days_ago=0),
    ]

    # When they are ordered for spending
    order = [found.lot_id for found in spending_order(lots, NOW)]

    # Then the soonest expiry goes first, ties go to the oldest, and "never" comes last
    assert order == ["soon", "late-old", "late-young", "forever"]


def test_expired_closed_and_empty_lots_are_never_drawn() -> None:
    # Given a lot past its expiry (not yet swept), a refunded lot, an empty lot and a live one
    lots = [
        lot("past-expiry", LotKind.SUBSCRIPTION, 5_000, expires_in_days=-1),
        lot("refunded", LotKind.PROMO, 5_000, status=LotStatus.REFUNDED),
        lot("empty", LotKind.BONUS, 0),
        lot("live", LotKind.PURCHASED, 5_000),
    ]

    # When 3,000 units are spent, then only the live lot pays
    assert allocate(lots, 3_000, NOW) == (LotDraw("live", -3_000),)


def test_a_shortage_takes_nothing_and_says_what_is_available() -> None:
    # Given 7,000 spendable units
    lots = [lot("a", LotKind.GRANT, 4_000), lot("b", LotKind.PURCHASED, 3_000)]

    # When 7,001 are asked for, then the shortage names both figures
    with pytest.raises(CreditShortage) as short:
        allocate(lots, 7_001, NOW)
    assert (short.value.needed, short.value.available) == (7_001, 7_000)
    # And exactly what is there can still be taken, down to zero and no further
    assert sum(d.amount for d in allocate(lots, 7_000, NOW)) == -7_000


def test_a_lot_expires_at_its_expiry_instant() -> None:
    # Given a lot expiring exactly now
    at_expiry = lot("edge", LotKind.SUBSCRIPTION, 1_000, expires_in_days=0)

    # Then it can no longer be spent
    assert not at_expiry.is_spendable(NOW)
    assert at_expiry.is_spendable(NOW - timedelta(microseconds=1))
