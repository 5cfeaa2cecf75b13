"""The arithmetic of batch reservations, without storage (``MeteringService.reserve_batch``).

A batch reservation holds the sum of its parts' estimates in one hold and counts every part in
every limit that applies to it, in one transaction. Each part then settles or releases on its
own, taking its share of the hold: its estimate's credits, taken from what the batch still
holds in the hold's own order (its spending order). The shares of all parts add up to the
hold exactly, so when the last part is done nothing is left held; which lot a part's share
comes from depends only on the order in which parts finish, never on a race.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tollgate.metering.models import LotDraw, Reservation, ReservationPart, ReservationStatus

MAX_BATCH_PARTS = 100
"""The most parts one batch reservation may have (the item holds them all, well under 400 KB)."""


def remaining_draws(held: Sequence[LotDraw], taken: Iterable[Sequence[LotDraw]]) -> tuple[LotDraw, ...]:
    """What a hold still holds per lot, in the hold's order, after the shares ``taken``.

    Draws are negative (credits taken from a lot), as ``LedgerPosting.hold`` makes them.
    Raises ``ValueError`` if the shares take more from a lot than the hold did (a bug)."""
    left: dict[str, int] = {}
    for draw in held:
        left[draw.lot_id] = left.get(draw.lot_id, 0) - draw.amount
    for share in taken:
        for draw in share:
            if draw.lot_id not in left or left[draw.lot_id] + draw.amount < 0:
                raise ValueError(f"a share takes more from lot {draw.lot_id} than the hold holds")
            left[draw.lot_id] += draw.amount
    return tuple(LotDraw(lot_id, -amount) for lot_id, amount in left.items() if amount)


def take_share(remaining: Sequence[LotDraw], amount: int) -> tuple[LotDraw, ...]:
    """``amount`` credits from what a hold still holds, first lot first (negative draws).
    Raises ``ValueError`` if the hold holds less (a bug: the parts' estimates make the hold)."""
    if amount < 0:
        raise ValueError("a share cannot be negative")
    share: list[LotDraw] = []
    left = amount
    for draw in remaining:
        if left == 0:
            break
        take = min(left, -draw.amount)
        if take:
            share.append(LotDraw(draw.lot_id, -take))
            left -= take
    if left:
        raise ValueError(f"the hold holds {amount - left} credit units, not the {amount} a part needs")
    return tuple(share)


def part_share(reservation: Reservation, part: ReservationPart) -> tuple[LotDraw, ...]:
    """The share of the batch's hold that ``part`` settles or releases now: its estimate's
    credits, from what the parts already done left."""
    done = (other.draws for other in reservation.parts if not other.is_open)
    return take_share(remaining_draws(reservation.draws, done), part.estimate.credits)


def closing_status(parts: Sequence[ReservationPart]) -> ReservationStatus:
    """``held`` while any part is open; then ``settled`` if any part settled, else ``released``."""
    if any(part.is_open for part in parts):
        return ReservationStatus.HELD
    if any(part.status is ReservationStatus.SETTLED for part in parts):
        return ReservationStatus.SETTLED
    return ReservationStatus.RELEASED


def with_part(reservation: Reservation, done: ReservationPart) -> tuple[ReservationPart, ...]:
    """The reservation's parts with ``done`` in place of the part of the same id."""
    return tuple(done if part.part_id == done.part_id else part for part in reservation.parts)


__all__ = [
    "MAX_BATCH_PARTS",
    "closing_status",
    "part_share",
    "remaining_draws",
    "take_share",
    "with_part",
]
