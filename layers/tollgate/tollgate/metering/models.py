"""The values the metering API takes and returns.

Money is integers only: credits in units of 1/10,000 credit (``CREDIT_UNITS``), provider
cost in micro-USD. Timestamps are timezone-aware UTC ``datetime`` values.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from msgspec import Struct, field

from tollgate.plans import Kind, LimitSpec, Metric, Scope, Window
from tollgate.units import CREDIT_UNITS, MICRO_USD


class LotKind(StrEnum):
    """Where a lot of credits came from. Its default priority decides what is spent first."""

    SUBSCRIPTION = "subscription"
    PROMO = "promo"
    BONUS = "bonus"
    GRANT = "grant"
    PURCHASED = "purchased"


class EntryKind(StrEnum):
    """The kinds of ledger entries (append-only; ``amount`` is signed)."""

    PURCHASE = "purchase"
    BONUS = "bonus"
    GRANT = "grant"
    SUBSCRIPTION_RENEWAL = "subscription_renewal"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    EXPIRY = "expiry"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


class ReservationStatus(StrEnum):
    HELD = "held"
    SETTLED = "settled"
    RELEASED = "released"


class PurchaseStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    REFUNDED = "refunded"


class AlertKind(StrEnum):
    LOW_BALANCE = "low_balance"  # balance fell to or below a share of the last top-up
    DEPLETED = "depleted"  # balance reached 0
    EXPIRY = "expiry"  # credits expired


class Usage(Struct, frozen=True):
    """What a call uses, as estimated before the provider call or measured after it.

    ``cost_micro_usd``, when given, is the provider cost as reported (it wins over the price
    table). ``cache_hit`` marks an answer served from the cache (priced by the cache-hit rule).
    """

    provider: str | None = None
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    cost_micro_usd: int | None = None
    cache_hit: bool = False

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Charge(Struct, frozen=True):
    """What a usage costs: the provider cost and the credits the feature's rule asks for."""

    feature: str
    rule: str  # flat | cost_plus | cache_hit
    cost_micro_usd: int
    credits: int
    tokens: int


class LotDraw(Struct, frozen=True):
    """Credits one ledger move took from (negative) or gave back to (positive) one lot."""

    lot_id: str
    amount: int


class CountedUsage(Struct, frozen=True):
    """One counter a reservation counted: its key, the amount counted and when its window ends."""

    counter_key: str
    metric: Metric
    amount: int
    window_end: datetime


class ReservationPart(Struct, frozen=True):
    """One part of a batch reservation (one image job of a batch): its estimate, what it
    counted in each limit, and how it ended. ``draws`` is its share of the batch's hold, taken
    when the part settles or releases (negative, as a hold's draws are)."""

    part_id: str
    estimate: Charge
    counted: tuple[CountedUsage, ...]
    status: ReservationStatus = ReservationStatus.HELD
    draws: tuple[LotDraw, ...] = ()
    settlement: Settlement | None = None
    release: Release | None = None

    @property
    def is_open(self) -> bool:
        return self.status is ReservationStatus.HELD


class Reservation(Struct, frozen=True):
    """A hold on credits and the limit counters counted for one request or job.

    A batch reservation (``reserve_batch``) has ``parts``: one hold and one count for all of
    them, settled or released part by part; ``version`` goes up with every part's move (each
    move is written only over the version it read) and the reservation closes with its last
    part: ``settled`` when any part settled, else ``released``.
    """

    reservation_id: str
    org_id: str
    user: str
    feature: str
    status: ReservationStatus
    held_credits: int
    estimate: Charge
    draws: tuple[LotDraw, ...]
    counted: tuple[CountedUsage, ...]
    balance_after: int
    created_at: datetime
    settlement: Settlement | None = None
    release: Release | None = None
    pricing_rule: dict[str, object] = field(default_factory=dict)  # the feature rule it was priced by
    parts: tuple[ReservationPart, ...] = ()
    version: int = 0

    @property
    def is_batch(self) -> bool:
        return bool(self.parts)

    def part(self, part_id: str) -> ReservationPart | None:
        return next((part for part in self.parts if part.part_id == part_id), None)


class Settlement(Struct, frozen=True):
    """The outcome of ``settle``: what was charged, what went back, what could not be collected.

    ``charged_credits`` = min(actual, held + balance available at settle time);
    ``uncollected_credits`` = actual - charged (only when the balance could not cover an actual
    cost above the estimate; the balance never goes negative).
    """

    reservation_id: str
    org_id: str
    actual: Charge
    held_credits: int
    charged_credits: int
    released_credits: int
    uncollected_credits: int
    forfeited_credits: int
    balance_after: int
    settled_at: datetime
    part_id: str | None = None  # the part of a batch reservation this settles


class Release(Struct, frozen=True):
    """The outcome of ``release``: what went back to the balance.

    ``forfeited_credits`` are held credits whose lot expired or was refunded meanwhile: they
    leave again at once (an ``expiry`` or ``refund`` entry), so nothing comes back to life.
    """

    reservation_id: str
    org_id: str
    released_credits: int
    forfeited_credits: int
    balance_after: int
    released_at: datetime
    part_id: str | None = None  # the part of a batch reservation this releases


class LimitStatus(Struct, frozen=True):
    """One applicable limit, as GET /v1/limits shows it."""

    scope: Scope
    subject: str  # the org id or the user
    metric: Metric
    window: Window
    kind: Kind | None
    provider: str | None
    max: int
    used: int
    remaining: int
    window_start: datetime
    resets_at: datetime

    def describe(self) -> dict[str, object]:
        """The limit as a JSON-ready dict (the ``limit`` member of a refusal's body)."""
        return {
            "scope": self.scope,
            "subject": self.subject,
            "metric": self.metric,
            "window": self.window,
            "kind": self.kind,
            "provider": self.provider,
            "max": self.max,
            "used": self.used,
            "remaining": self.remaining,
            "resets_at": self.resets_at.isoformat().replace("+00:00", "Z"),
        }


class Availability(Struct, frozen=True):
    """Would this feature be allowed now? ``reason`` is a problem code when not."""

    allowed: bool
    reason: str | None  # rate_limited | quota_exceeded | insufficient_credits
    retry_after: int | None  # seconds, when a limit blocks
    needed_credits: int
    available_credits: int
    blocking: LimitStatus | None
    limits: tuple[LimitStatus, ...]


class LotView(Struct, frozen=True):
    """An open lot as the balance shows it."""

    lot_id: str
    kind: LotKind
    priority: int
    remaining: int
    held: int
    original: int
    expires_at: datetime | None
    created_at: datetime
    reference: str | None


class Balance(Struct, frozen=True):
    """An org's credits: ``balance`` is spendable now; ``held`` is reserved by requests in flight."""

    org_id: str
    balance: int
    held: int
    lots: tuple[LotView, ...]
    last_topup: int
    sequence: int


class LedgerEntry(Struct, frozen=True):
    """One append-only ledger entry. ``amount`` is signed; ``balance_after`` is exact."""

    org_id: str
    sequence: int
    kind: EntryKind
    amount: int
    balance_after: int
    lots: tuple[LotDraw, ...]
    reference: str | None
    at: datetime
    note: str | None = None
    details: dict[str, int | str] = field(default_factory=dict)


class EntryPage(Struct, frozen=True):
    """A page of ledger entries, newest first, and the cursor of the next page (None at the end)."""

    entries: tuple[LedgerEntry, ...]
    next_cursor: str | None


class GrantResult(Struct, frozen=True):
    """The outcome of a grant; ``created`` is False when the operation id had been used."""

    lot_id: str
    entry: LedgerEntry | None
    created: bool


class Purchase(Struct, frozen=True):
    """A credit purchase and its lifecycle (pending -> completed | failed; completed -> refunded)."""

    purchase_id: str
    org_id: str
    package: str
    credits: int
    bonus_credits: int
    price_micro_usd: int
    status: PurchaseStatus
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    lot_ids: tuple[str, ...] = ()
    refunded_credits: int = 0
    external_reference: str | None = None


class PurchasePage(Struct, frozen=True):
    purchases: tuple[Purchase, ...]
    next_cursor: str | None


class RenewalResult(Struct, frozen=True):
    """The outcome of a subscription renewal; ``renewed`` is False when the cycle had been renewed."""

    org_id: str
    cycle_start: datetime
    cycle_end: datetime
    renewed: bool
    lot_id: str | None
    amount: int


class Alert(Struct, frozen=True):
    """A balance alert, recorded once per crossing inside the ledger move that crossed."""

    alert_id: str
    org_id: str
    kind: AlertKind
    threshold: int  # the balance threshold in credit units (0 for depleted; the amount for expiry)
    threshold_percent: int | None  # 20, 10, 0 of the last top-up; None for expiry
    balance: int  # the balance right after the entry that fired it
    topup_reference: str | None  # the top-up's ledger sequence (thresholds) or the lot's reference
    at: datetime
    published: bool
    sequence: int  # the ledger entry that fired it


class StaleSweep(Struct, frozen=True):
    """What ``release_stale`` did."""

    released: tuple[Release, ...]
    skipped: int


__all__ = [
    "CREDIT_UNITS",
    "MICRO_USD",
    "Alert",
    "AlertKind",
    "Availability",
    "Balance",
    "Charge",
    "CountedUsage",
    "EntryKind",
    "EntryPage",
    "GrantResult",
    "Kind",
    "LedgerEntry",
    "LimitSpec",
    "LimitStatus",
    "LotDraw",
    "LotKind",
    "LotView",
    "Purchase",
    "PurchasePage",
    "PurchaseStatus",
    "Release",
    "RenewalResult",
    "Reservation",
    "ReservationPart",
    "ReservationStatus",
    "Settlement",
    "StaleSweep",
    "Usage",
]
