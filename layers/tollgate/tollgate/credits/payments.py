"""Purchase transitions, from the admin API or a verified payment webhook event."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from tollgate.errors import NotFound
from tollgate.ids import is_valid_id

if TYPE_CHECKING:
    from tollgate.metering.models import Purchase
    from tollgate.metering.service import MeteringService

PURCHASE_ID_PREFIX = "pur"


class Transition(StrEnum):
    COMPLETE = "complete"
    FAIL = "fail"
    REFUND = "refund"


PAYMENT_EVENT_TRANSITIONS = {
    "payment.succeeded": Transition.COMPLETE,
    "payment.failed": Transition.FAIL,
    "payment.refunded": Transition.REFUND,
}


def check_purchase_id(purchase_id: str) -> str:
    """A purchase id of the right shape, or ``NotFound`` before any lookup."""
    if not is_valid_id(purchase_id, PURCHASE_ID_PREFIX):
        raise NotFound(f"No purchase {purchase_id!r}")
    return purchase_id


def transition_purchase(
    metering: MeteringService,
    transition: Transition,
    org_id: str,
    purchase_id: str,
    external_reference: str | None = None,
) -> Purchase:
    """Move a purchase to completed, failed or refunded, at most once.

    Repeating a transition returns the purchase as it is (a webhook delivered three times
    credits once); an impossible one (completing a failed purchase) is ``Conflict``."""
    check_purchase_id(purchase_id)
    if not is_valid_id(org_id, "org"):
        raise NotFound(f"No purchase {purchase_id!r}")
    moves: dict[Transition, Callable[[str, str, str | None], Purchase]] = {
        Transition.COMPLETE: metering.complete_purchase,
        Transition.FAIL: metering.fail_purchase,
        Transition.REFUND: metering.refund_purchase,
    }
    return moves[transition](org_id, purchase_id, external_reference)
