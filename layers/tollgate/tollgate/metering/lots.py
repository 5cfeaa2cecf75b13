"""Credit lots and the order they are spent in.

Every arrival of credits is a lot (S4). Spending takes lots by priority (lower first: the
subscription's credits go first), then the soonest expiry (a lot that never expires last),
then the oldest, then the lot id (a total order, so two readers always agree).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum

from msgspec import Struct

from tollgate.metering.models import LotDraw, LotKind

DEFAULT_PRIORITY: dict[LotKind, int] = {
    LotKind.SUBSCRIPTION: 10,  # use it or lose it at the cycle's end
    LotKind.PROMO: 20,
    LotKind.BONUS: 30,
    LotKind.GRANT: 40,
    LotKind.PURCHASED: 50,  # paid for: kept for last
}
_NEVER = datetime.max.replace(tzinfo=UTC)


class LotStatus(StrEnum):
    OPEN = "open"
    EXPIRED = "expired"  # its credits left at expiry; credits held from it leave when released
    REFUNDED = "refunded"  # its purchase was refunded; same treatment


class CreditShortage(Exception):
    """Not enough spendable credits for a draw."""

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"needed {needed}, available {available}")
        self.needed = needed
        self.available = available


class CreditLot(Struct, frozen=True):
    """One lot: ``remaining`` is spendable, ``held`` is drawn by reservations not yet settled."""

    lot_id: str
    kind: LotKind
    priority: int
    original: int
    remaining: int
    held: int
    created_at: datetime
    expires_at: datetime | None
    status: LotStatus = LotStatus.OPEN
    reference: str | None = None

    def is_spendable(self, at: datetime) -> bool:
        """Open, not past its expiry, with credits left."""
        return self.status is LotStatus.OPEN and self.remaining > 0 and not self.is_due(at)

    def is_due(self, at: datetime) -> bool:
        """Past its expiry (expired at ``expires_at`` exactly)."""
        return self.expires_at is not None and self.expires_at <= at

    @property
    def is_finished(self) -> bool:
        """Nothing left and nothing held: nothing can ever come back to it."""
        return self.remaining == 0 and self.held == 0

    def spending_key(self) -> tuple[int, datetime, datetime, str]:
        return (self.priority, self.expires_at or _NEVER, self.created_at, self.lot_id)


def spending_order(lots: Iterable[CreditLot], at: datetime) -> list[CreditLot]:
    """The spendable lots, in the order credits are taken from them."""
    return sorted((lot for lot in lots if lot.is_spendable(at)), key=CreditLot.spending_key)


def spendable(lots: Iterable[CreditLot], at: datetime) -> int:
    """Credits that may be spent now."""
    return sum(lot.remaining for lot in lots if lot.is_spendable(at))


def allocate(lots: Iterable[CreditLot], amount: int, at: datetime) -> tuple[LotDraw, ...]:
    """Split ``amount`` across lots in spending order; each draw is negative (credits taken).

    Raises ``CreditShortage`` when the spendable credits do not cover it. Never takes more than
    a lot's ``remaining``, so no lot goes below zero.
    """
    if amount < 0:
        raise ValueError("cannot allocate a negative amount")
    ordered = spending_order(lots, at)
    available = sum(lot.remaining for lot in ordered)
    if amount > available:
        raise CreditShortage(amount, available)
    draws: list[LotDraw] = []
    left = amount
    for lot in ordered:
        if left == 0:
            break
        take = min(left, lot.remaining)
        draws.append(LotDraw(lot.lot_id, -take))
        left -= take
    return tuple(draws)
