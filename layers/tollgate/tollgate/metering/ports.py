"""What metering needs from storage. The DynamoDB adapter is ``tollgate.aws.metering_store``.

The service computes every move (limits, pricing, lot allocation, alerts) and hands the store
one ``MeteringCommit`` to write atomically; the store reports why a commit did not happen with
one of the exceptions below, and never decides anything about money itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from msgspec import Struct, field

from tollgate.metering.ledger import CreditAccount
from tollgate.metering.models import (
    Alert,
    LedgerEntry,
    Purchase,
    PurchaseStatus,
    Reservation,
    ReservationStatus,
)
from tollgate.plans import LimitSpec
from tollgate.staging import StagedWrites

# -- what a commit is made of ---------------------------------------------------------------


class CounterChange(Struct, frozen=True):
    """Add ``amount`` to a limit counter. With a ``bound``, only if the result stays within it
    (``used + amount <= bound``); without one, unconditionally (settling actual usage)."""

    key: str
    amount: int
    bound: int | None
    expires_at: datetime  # the counter item's TTL: after its window has ended


class AccountChange(Struct, frozen=True):
    """The account's new state, written only if its sequence is still ``before.sequence``
    (or it does not exist yet when ``before.exists`` is False). ``lot_guards``: for each lot
    credits are taken from, the stored ``remaining`` must be at least that much."""

    before: CreditAccount
    after: CreditAccount
    lot_guards: Mapping[str, int]


class ReservationTransition(Struct, frozen=True):
    """Write ``after`` only if the stored reservation is still in status ``expected`` (and,
    for a batch reservation moved part by part, still at ``expected_version``)."""

    after: Reservation
    expected: ReservationStatus
    expected_version: int | None = None


class PurchaseTransition(Struct, frozen=True):
    after: Purchase
    expected: PurchaseStatus


class OperationMarker(Struct, frozen=True):
    """An operation done once per org and id (grant, renewal, adjustment): written only if absent."""

    operation_id: str
    result: Mapping[str, str | int]


class MeteringCommit(Struct, frozen=True):
    """Everything one metering step writes, all or nothing."""

    org_id: str
    account: AccountChange | None = None
    entries: Sequence[LedgerEntry] = ()
    alerts: Sequence[Alert] = ()
    counters: Sequence[CounterChange] = ()
    new_reservation: Reservation | None = None
    reservation: ReservationTransition | None = None
    new_purchase: Purchase | None = None
    purchase: PurchaseTransition | None = None
    operation: OperationMarker | None = None
    staged: Sequence[StagedWrites] = ()  # other stores' writes that go with this step (a record)


# -- why a commit did not happen --------------------------------------------------------------


class CommitRaced(Exception):
    """Another writer changed the account, the reservation or the purchase since it was read:
    read again and retry. Never a reason to refuse a request."""


class StagedWriteRefused(Exception):
    """A write another store staged into the commit refused its condition: nothing happened."""


class LimitReached(Exception):
    """A bounded counter would pass its bound. ``used`` is each refusing counter's current value."""

    def __init__(self, used: Mapping[str, int]) -> None:
        super().__init__(f"limits reached: {sorted(used)}")
        self.used = dict(used)


class ReservationExists(Exception):
    """A reservation with this id exists already (an idempotent replay)."""

    def __init__(self, existing: Reservation) -> None:
        super().__init__(existing.reservation_id)
        self.existing = existing


class PurchaseExists(Exception):
    def __init__(self, existing: Purchase) -> None:
        super().__init__(existing.purchase_id)
        self.existing = existing


class OperationDone(Exception):
    """The operation id was used before; ``result`` is what the first run recorded."""

    def __init__(self, result: Mapping[str, str | int]) -> None:
        super().__init__("operation done")
        self.result = dict(result)


# -- reads ------------------------------------------------------------------------------------


class OrgProfile(Struct, frozen=True):
    """What metering needs to know about an org."""

    plan: str | None
    billing_anchor_day: int = 1
    limit_overrides: tuple[LimitSpec, ...] = ()
    exists: bool = False


class MeteringSnapshot(Struct, frozen=True):
    """One consistent read of an org's metering state (one call to the store)."""

    account: CreditAccount
    profile: OrgProfile
    reservation: Reservation | None = None
    purchase: Purchase | None = None
    operation: Mapping[str, str | int] | None = None
    extra: Mapping[str, object] = field(default_factory=dict)
    read: bool = True  # False: assembled from what the service already knew, not read now


class MeteringStore(Protocol):
    def load(
        self,
        org_id: str,
        *,
        reservation_id: str | None = None,
        purchase_id: str | None = None,
        operation_id: str | None = None,
    ) -> MeteringSnapshot:
        """The account, the org's profile and, when asked, one reservation, purchase and
        operation marker, in one strongly consistent read."""
        ...

    def commit(self, commit: MeteringCommit) -> None:
        """Write everything or nothing. Raises ``CommitRaced``, ``LimitReached``,
        ``ReservationExists``, ``PurchaseExists``, ``OperationDone`` or ``StagedWriteRefused``."""
        ...

    def counters(self, org_id: str, keys: Sequence[str]) -> dict[str, int]:
        """Current values of limit counters (absent counters are 0)."""
        ...

    def entries(self, org_id: str, before_sequence: int | None, limit: int) -> list[LedgerEntry]:
        """Ledger entries with a sequence below ``before_sequence`` (all when None), newest first."""
        ...

    def held_reservations(self, org_id: str, created_before: datetime) -> list[str]:
        """Ids of reservations still held and created before the given time, oldest first."""
        ...

    def purchases(self, org_id: str, before: str | None, limit: int) -> tuple[list[Purchase], str | None]:
        """Purchases, newest first, from an opaque position (None: from the newest)."""
        ...

    def alerts(self, org_id: str, limit: int) -> list[Alert]:
        """The org's alerts, newest first."""
        ...

    def unpublished_alerts(self, limit: int) -> list[Alert]:
        """Alerts of every org not yet published, oldest first."""
        ...

    def mark_alert_published(self, org_id: str, alert_id: str) -> None: ...

    def save_limit_overrides(self, org_id: str, overrides: Sequence[LimitSpec]) -> None:
        """Replace the org's limit overrides; ``NotFound`` when there is no such org."""
        ...
