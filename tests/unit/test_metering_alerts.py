"""Low-balance alerts: thresholds at 20 %, 10 % of the last top-up and 0; once per crossing."""

from __future__ import annotations

from datetime import UTC, datetime

from tollgate.metering.alerts import crossed_thresholds
from tollgate.metering.ledger import CreditAccount, LedgerPosting
from tollgate.metering.models import AlertKind, EntryKind, LotKind

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def test_thresholds_fire_when_the_balance_is_at_or_below_them() -> None:
    # Given a last top-up of 100,000 units (20 % = 20,000; 10 % = 10,000)
    assert crossed_thresholds(100_000, set(), 20_001) == []
    assert crossed_thresholds(100_000, set(), 20_000) == [20]
    assert crossed_thresholds(100_000, set(), 9_999) == [20, 10]
    assert crossed_thresholds(100_000, set(), 0) == [20, 10, 0]
    # And a threshold already fired since the top-up does not fire again
    assert crossed_thresholds(100_000, {20, 10}, 5_000) == []
    # And nothing fires before any top-up
    assert crossed_thresholds(0, set(), 0) == []


def test_exact_integer_comparison_with_an_odd_top_up() -> None:
    # 20 % of 33 units is 6.6: 7 is above it, 6 is at or below it
    assert crossed_thresholds(33, set(), 7) == []
    assert crossed_thresholds(33, set(), 6) == [20]


def _account_after(posting: LedgerPosting) -> CreditAccount:
    return posting.result()


def test_an_alert_fires_once_per_crossing_and_re_arms_at_the_next_top_up() -> None:
    # Given an org topped up with 100 credits (1,000,000 units)
    posting = LedgerPosting(CreditAccount("org"), NOW)
    posting.add_lot(LotKind.PURCHASED, 1_000_000, EntryKind.PURCHASE, reference="pur_1", expires_at=None)
    account = _account_after(posting)

    # When a hold takes the balance to 15 % (crossing 20 %)
    posting = LedgerPosting(account, NOW)
    held = posting.hold(850_000, "r1")
    assert [(a.kind, a.threshold_percent) for a in posting.alerts] == [(AlertKind.LOW_BALANCE, 20)]
    account = _account_after(posting)

    # And it is released (back to 100 %) and the same is held again (15 % again)
    posting = LedgerPosting(account, NOW)
    posting.release(held, "r1")
    posting.hold(850_000, "r2")

    # Then the 20 % alert does not fire a second time before a new top-up
    assert posting.alerts == []
    account = _account_after(posting)

    # When the balance reaches 0, then 10 % and 0 fire, once each, in that move
    posting = LedgerPosting(account, NOW)
    posting.hold(150_000, "r3")
    assert [(a.kind, a.threshold_percent) for a in posting.alerts] == [
        (AlertKind.LOW_BALANCE, 10),
        (AlertKind.DEPLETED, 0),
    ]
    assert {a.alert_id for a in posting.alerts} == {"000000000001-010", "000000000001-000"}
    account = _account_after(posting)

    # When a new top-up arrives and is spent down again, then the 20 % alert fires again, keyed to it
    posting = LedgerPosting(account, NOW)
    posting.add_lot(LotKind.BONUS, 100_000, EntryKind.BONUS, reference="pur_2", expires_at=None)
    posting.hold(90_000, "r4")
    assert [(a.threshold_percent, a.alert_id) for a in posting.alerts] == [
        (20, f"{account.sequence + 1:012d}-020"),
        (10, f"{account.sequence + 1:012d}-010"),
    ]
