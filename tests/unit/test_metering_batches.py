"""The arithmetic of batch reservations: each part's share of the batch's hold, taken in the
hold's order, adds up to the hold exactly whatever the order in which parts finish."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from msgspec.structs import replace

from tollgate.metering.batches import closing_status, part_share, remaining_draws, take_share, with_part
from tollgate.metering.ledger import CreditAccount, LedgerPosting
from tollgate.metering.models import (
    Charge,
    EntryKind,
    LotDraw,
    LotKind,
    Reservation,
    ReservationPart,
    ReservationStatus,
)

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def charge(credits: int) -> Charge:
    return Charge("image", "cost_plus", credits, credits, 0)


def batch(draws: tuple[LotDraw, ...], *credits: int) -> Reservation:
    parts = tuple(ReservationPart(f"p{n}", charge(c), ()) for n, c in enumerate(credits))
    return Reservation(
        reservation_id="bat_1",
        org_id="org",
        user="ann",
        feature="image",
        status=ReservationStatus.HELD,
        held_credits=sum(credits),
        estimate=charge(sum(credits)),
        draws=draws,
        counted=(),
        balance_after=0,
        created_at=NOW,
        parts=parts,
    )


def test_a_share_takes_from_the_first_lots_of_the_hold_first() -> None:
    held = (LotDraw("a", -300), LotDraw("b", -500))
    assert take_share(held, 400) == (LotDraw("a", -300), LotDraw("b", -100))
    assert take_share(held, 0) == ()
    with pytest.raises(ValueError, match="holds 800"):
        take_share(held, 801)


def test_what_is_left_is_the_hold_less_the_shares_taken() -> None:
    held = (LotDraw("a", -300), LotDraw("b", -500))
    left = remaining_draws(held, [(LotDraw("a", -300), LotDraw("b", -100))])
    assert left == (LotDraw("b", -400),)
    with pytest.raises(ValueError, match="more from lot a"):
        remaining_draws(held, [(LotDraw("a", -301),)])
    with pytest.raises(ValueError, match="more from lot z"):
        remaining_draws(held, [(LotDraw("z", -1),)])


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_the_shares_of_all_parts_add_up_to_the_hold_in_any_order(order: tuple[int, ...]) -> None:
    # Given a batch of three parts (300, 250, 450) held across two lots
    reservation = batch((LotDraw("a", -600), LotDraw("b", -400)), 300, 250, 450)
    # When the parts finish in this order, each taking its share
    for index in order:
        part = reservation.parts[index]
        share = part_share(reservation, part)
        assert -sum(d.amount for d in share) == part.estimate.credits
        done = replace(part, status=ReservationStatus.SETTLED, draws=share)
        reservation = replace(reservation, parts=with_part(reservation, done))
    # Then every lot gave exactly what the hold took from it, and nothing is left
    taken: dict[str, int] = {}
    for part in reservation.parts:
        for draw in part.draws:
            taken[draw.lot_id] = taken.get(draw.lot_id, 0) + draw.amount
    assert taken == {"a": -600, "b": -400}
    assert remaining_draws(reservation.draws, [p.draws for p in reservation.parts]) == ()


def test_a_batch_closes_with_its_last_part() -> None:
    open_part = ReservationPart("p0", charge(1), ())
    settled = replace(open_part, part_id="p1", status=ReservationStatus.SETTLED)
    released = replace(open_part, part_id="p2", status=ReservationStatus.RELEASED)
    assert closing_status([open_part, settled]) is ReservationStatus.HELD
    assert closing_status([settled, released]) is ReservationStatus.SETTLED
    assert closing_status([released, replace(released, part_id="p3")]) is ReservationStatus.RELEASED


def test_settling_and_releasing_parts_keeps_the_ledger_exact() -> None:
    # Given 10 credits in two lots and a batch of three parts holding 1 + 2 + 3 credits
    posting = LedgerPosting(CreditAccount("org"), NOW)
    posting.add_lot(LotKind.PROMO, 25_000, EntryKind.GRANT, reference="g1", expires_at=None, lot_id="promo")
    posting.add_lot(LotKind.GRANT, 75_000, EntryKind.GRANT, reference="g2", expires_at=None, lot_id="grant")
    account = posting.result()
    posting = LedgerPosting(account, NOW)
    draws = posting.hold(60_000, "bat_1")
    reservation = batch(draws, 10_000, 20_000, 30_000)
    # When the first part settles at 0.5 credit, the second is released and the third settles
    # above its estimate (3.5 credits)
    for index, actual in ((0, 5_000), (1, None), (2, 35_000)):
        part = reservation.parts[index]
        share = part_share(reservation, part)
        if actual is None:
            posting.release(share, part.part_id)
            status = ReservationStatus.RELEASED
        else:
            posting.capture(share, actual, part.part_id)
            status = ReservationStatus.SETTLED
        reservation = replace(
            reservation, parts=with_part(reservation, replace(part, status=status, draws=share))
        )
    # Then 4 credits were spent in all, nothing is held, and the balance is the sum of entries
    after = posting.result()
    assert after.held == 0
    assert after.balance == 100_000 - 5_000 - 35_000
    assert sum(e.amount for e in posting.entries) == after.balance - account.balance
    # (the promo lot is spent first: the first part's share, most of the second's, the extra)
    assert {lot.lot_id: (lot.remaining, lot.held) for lot in after.lots} == {
        "promo": (15_000, 0),
        "grant": (45_000, 0),
    }
    assert closing_status(reservation.parts) is ReservationStatus.SETTLED
