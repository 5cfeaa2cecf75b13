"""The ledger's arithmetic: holds, captures, releases, expiry and refunds, with exact balances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from msgspec.structs import replace

from tollgate.metering.ledger import CreditAccount, LedgerInvariantBroken, LedgerPosting
from tollgate.metering.lots import CreditLot, CreditShortage, LotStatus
from tollgate.metering.models import EntryKind, LotDraw, LotKind

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def funded(*lots: tuple[LotKind, int, datetime | None]) -> CreditAccount:
    posting = LedgerPosting(CreditAccount("org"), NOW - timedelta(days=1))
    for number, (kind, amount, expires) in enumerate(lots):
        posting.add_lot(
            kind, amount, EntryKind.GRANT, reference=f"g{number}", expires_at=expires, lot_id=f"lot{number}"
        )
    return posting.result()


def kinds_and_amounts(posting: LedgerPosting) -> list[tuple[EntryKind, int]]:
    return [(e.kind, e.amount) for e in posting.entries]


def assert_entries_chain(before: CreditAccount, posting: LedgerPosting) -> None:
    """Each entry's balance_after is the running sum; the sequence is unbroken."""
    balance, sequence = before.balance, before.sequence
    for entry in posting.entries:
        balance += entry.amount
        sequence += 1
        assert (entry.balance_after, entry.sequence) == (balance, sequence)
    after = posting.result()
    assert (after.balance, after.sequence) == (balance, sequence)


def test_settling_below_the_hold_charges_the_actual_and_returns_the_rest() -> None:
    # Given 10 credits and a hold of 3
    account = funded((LotKind.PURCHASED, 100_000, None))
    posting = LedgerPosting(account, NOW)
    draws = posting.hold(30_000, "req_1")

    # When the request turns out to cost 1.2345 credits
    outcome = posting.capture(draws, 12_345, "req_1")

    # Then 1.2345 is charged, 1.7655 comes back, and the balance is 10 - 1.2345
    assert (outcome.charged, outcome.released, outcome.uncollected) == (12_345, 17_655, 0)
    assert kinds_and_amounts(posting) == [
        (EntryKind.HOLD, -30_000),
        (EntryKind.CAPTURE, 0),
        (EntryKind.RELEASE, 17_655),
    ]
    assert posting.result().balance == 100_000 - 12_345
    assert posting.result().held == 0
    assert_entries_chain(account, posting)


def test_settling_above_the_hold_takes_the_extra_as_far_as_the_balance_goes() -> None:
    # Given 5 credits, 4 of them held
    account = funded((LotKind.GRANT, 50_000, None))
    posting = LedgerPosting(account, NOW)
    draws = posting.hold(40_000, "req_1")

    # When the actual cost is 7 credits
    outcome = posting.capture(draws, 70_000, "req_1")

    # Then all 5 are charged, 2 are uncollected, and the balance stops at zero
    assert (outcome.charged, outcome.released, outcome.uncollected) == (50_000, 0, 20_000)
    assert posting.result().balance == 0
    assert posting.entries[-1].details == {"charged": 50_000, "held": 40_000, "uncollected": 20_000}
    assert_entries_chain(account, posting)


def test_a_hold_spends_subscription_first_and_a_release_returns_each_credit_to_its_lot() -> None:
    # Given a purchased lot and a subscription lot
    account = funded(
        (LotKind.PURCHASED, 50_000, None), (LotKind.SUBSCRIPTION, 20_000, NOW + timedelta(days=9))
    )
    posting = LedgerPosting(account, NOW)

    # When 30,000 are held, then the subscription pays first
    draws = posting.hold(30_000, "req")
    assert draws == (LotDraw("lot1", -20_000), LotDraw("lot0", -10_000))
    # And a release puts every unit back where it came from
    posting.release(draws, "req")
    after = posting.result()
    assert {lot.lot_id: (lot.remaining, lot.held) for lot in after.lots} == {
        "lot0": (50_000, 0),
        "lot1": (20_000, 0),
    }
    assert_entries_chain(account, posting)


def test_credits_held_from_a_lot_that_expires_meanwhile_leave_when_released() -> None:
    # Given a subscription lot expiring at NOW, 6,000 of it held before it expired
    account = funded((LotKind.SUBSCRIPTION, 10_000, NOW), (LotKind.PURCHASED, 10_000, None))
    earlier = LedgerPosting(account, NOW - timedelta(hours=1))
    draws = earlier.hold(6_000, "req")
    account = earlier.result()

    # When the lot expires, then only its 4,000 unheld credits leave
    expiring = LedgerPosting(account, NOW)
    assert [(e.kind, e.amount) for e in expiring.expire_due()] == [(EntryKind.EXPIRY, -4_000)]
    assert expiring.alerts[-1].kind.value == "expiry"
    account = expiring.result()

    # And when the request fails and its hold is released, then the 6,000 come back and leave again
    release = LedgerPosting(account, NOW)
    outcome = release.release(draws, "req")
    assert (outcome.released, outcome.forfeited) == (0, 6_000)
    assert kinds_and_amounts(release) == [(EntryKind.RELEASE, 6_000), (EntryKind.EXPIRY, -6_000)]
    after = release.result()
    assert after.balance == 10_000  # only the purchased lot
    assert [lot.lot_id for lot in after.lots] == ["lot1"]  # the spent-out expired lot is gone


def test_settling_charges_held_credits_of_a_closed_lot_first() -> None:
    # Given 5,000 held from an (about to be refunded) bonus lot and 5,000 from a purchased lot
    account = funded((LotKind.BONUS, 5_000, None), (LotKind.PURCHASED, 10_000, None))
    posting = LedgerPosting(account, NOW)
    draws = posting.hold(10_000, "req")
    refunded = posting.refund_lots(["lot0"], "pur_1")
    assert refunded == 0  # everything of the bonus lot was on hold: nothing unspent to take

    # When the request costs 5,000, then the refunded lot's held credits pay for it
    outcome = posting.capture(draws, 5_000, "req")
    assert (outcome.charged, outcome.released, outcome.forfeited) == (5_000, 5_000, 0)
    assert {lot.lot_id: lot.remaining for lot in posting.result().lots} == {"lot1": 10_000}


def test_a_refund_takes_only_the_unspent_credits_of_its_lots() -> None:
    # Given purchase 1 (lot0 + its bonus lot1) and a later purchase 2 (lot2); 12,000 spent, all
    # from purchase 1 (bonus first, then the oldest purchased lot)
    account = funded(
        (LotKind.PURCHASED, 10_000, None), (LotKind.BONUS, 5_000, None), (LotKind.PURCHASED, 7_000, None)
    )
    posting = LedgerPosting(account, NOW)
    draws = posting.hold(12_000, "req")
    posting.capture(draws, 12_000, "req")

    # When the purchase is refunded
    taken = posting.refund_lots(["lot0", "lot1"], "pur_1")

    # Then only the 3,000 left of it leave; purchase 2 is untouched
    assert taken == 3_000
    after = posting.result()
    assert after.balance == 7_000
    assert [(lot.lot_id, lot.remaining) for lot in after.lots] == [("lot2", 7_000)]
    assert_entries_chain(account, posting)


def test_a_shortage_changes_nothing() -> None:
    account = funded((LotKind.GRANT, 1_000, None))
    posting = LedgerPosting(account, NOW)
    with pytest.raises(CreditShortage):
        posting.hold(1_001, "req")
    assert posting.entries == []
    assert not posting.changed
    assert posting.result().balance == 1_000


def test_a_lot_guard_names_what_each_stored_lot_must_still_hold() -> None:
    account = funded((LotKind.SUBSCRIPTION, 3_000, NOW + timedelta(days=1)), (LotKind.PURCHASED, 9_000, None))
    posting = LedgerPosting(account, NOW)
    posting.hold(5_000, "req")
    assert posting.lot_guards() == {"lot0": 3_000, "lot1": 2_000}


def test_an_inconsistent_account_is_refused_before_any_move() -> None:
    broken = CreditAccount(
        "org",
        sequence=1,
        balance=5,
        lots=(CreditLot("l", LotKind.GRANT, 40, 4, 4, 0, NOW, None, LotStatus.OPEN),),
        exists=True,
    )
    with pytest.raises(LedgerInvariantBroken):
        LedgerPosting(broken, NOW)


def test_expiry_is_bounded_per_posting() -> None:
    lots = [(LotKind.PROMO, 10, NOW - timedelta(minutes=1)) for _ in range(25)]
    posting = LedgerPosting(funded(*lots), NOW)
    assert len(posting.expire_due()) == 20  # the rest go in the next posting
    assert len(LedgerPosting(posting.result(), NOW).expire_due()) == 5


def test_the_ledger_audit_passes_a_true_ledger_and_names_each_kind_of_break() -> None:
    posting = LedgerPosting(CreditAccount("org"), NOW)
    posting.add_lot(LotKind.PROMO, 500, EntryKind.GRANT, reference="g0", expires_at=None, lot_id="lot0")
    posting.add_lot(LotKind.PURCHASED, 300, EntryKind.GRANT, reference="g1", expires_at=None, lot_id="lot1")
    account, entries = posting.result(), list(posting.entries)
    account.check_entries(entries)  # a true ledger passes
    first, second = entries
    with pytest.raises(LedgerInvariantBroken, match="sequence"):
        account.check_entries([second])
    with pytest.raises(LedgerInvariantBroken, match="entry 2 says 700"):
        account.check_entries([first, replace(second, balance_after=700)])
    with pytest.raises(LedgerInvariantBroken, match="sum of entries 799 != balance 800"):
        account.check_entries([first, replace(second, amount=299, balance_after=799)])
