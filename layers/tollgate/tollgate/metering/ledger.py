"""The credit ledger's arithmetic, without storage.

An org's ledger state is one ``CreditAccount``: its balance, what is held, its open lots, a
sequence number (one per entry ever written) and its alert state. A ``LedgerPosting`` starts
from a snapshot and applies moves (top-ups, holds, captures, releases, expiry, refunds),
producing the entries, the alerts and the new state that the store then writes in one
transaction, conditioned on the snapshot's sequence (optimistic concurrency).

Invariants kept here and checked on every move:
- ``balance == sum(lot.remaining)`` and ``held == sum(lot.held)``;
- no lot's ``remaining`` or ``held`` ever goes below zero;
- every entry's ``balance_after`` is the previous balance plus its amount.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from msgspec import Struct, field
from msgspec.structs import replace

from tollgate.ids import new_id
from tollgate.metering.alerts import crossed_thresholds, threshold_units
from tollgate.metering.lots import DEFAULT_PRIORITY, CreditLot, CreditShortage, LotStatus, allocate, spendable
from tollgate.metering.models import Alert, AlertKind, EntryKind, LedgerEntry, LotDraw, LotKind

MAX_EXPIRIES_PER_POSTING = 20
_TOPUP_KINDS = frozenset(
    {EntryKind.PURCHASE, EntryKind.BONUS, EntryKind.GRANT, EntryKind.SUBSCRIPTION_RENEWAL}
)


class LedgerInvariantBroken(AssertionError):
    """A move would break an invariant (a bug, never a client error): nothing is written."""


class CreditAccount(Struct, frozen=True):
    """An org's ledger state as stored in its account item."""

    org_id: str
    sequence: int = 0
    balance: int = 0
    held: int = 0
    lots: tuple[CreditLot, ...] = ()
    last_topup: int = 0
    topup_sequence: int = 0
    alerts_fired: frozenset[int] = field(default_factory=frozenset)
    exists: bool = False

    def lot(self, lot_id: str) -> CreditLot | None:
        return next((lot for lot in self.lots if lot.lot_id == lot_id), None)

    def spendable(self, at: datetime) -> int:
        """Credits that may be spent now (open lots not past their expiry)."""
        return spendable(self.lots, at)

    def check(self) -> None:
        """Raise ``LedgerInvariantBroken`` if the state is inconsistent."""
        if any(lot.remaining < 0 or lot.held < 0 for lot in self.lots):
            raise LedgerInvariantBroken(f"{self.org_id}: a lot below zero")
        if self.balance != sum(lot.remaining for lot in self.lots):
            raise LedgerInvariantBroken(f"{self.org_id}: balance != sum of lots")
        if self.held != sum(lot.held for lot in self.lots):
            raise LedgerInvariantBroken(f"{self.org_id}: held != sum of lot holds")

    def check_entries(self, entries: Sequence[LedgerEntry]) -> None:
        """Raise ``LedgerInvariantBroken`` unless ``entries`` (all of the org's, oldest first)
        are this account's ledger: an unbroken sequence, each ``balance_after`` the running sum,
        the sum the balance; and the account itself consistent (``check``). The audit of tests,
        benchmarks and operators; no money move needs it."""
        if [entry.sequence for entry in entries] != list(range(1, self.sequence + 1)):
            raise LedgerInvariantBroken(f"{self.org_id}: the entries' sequence is not 1..{self.sequence}")
        running = 0
        for entry in entries:
            running += entry.amount
            if entry.balance_after != running:
                raise LedgerInvariantBroken(
                    f"{self.org_id}: entry {entry.sequence} says {entry.balance_after}, the sum is {running}"
                )
        if running != self.balance:
            raise LedgerInvariantBroken(f"{self.org_id}: sum of entries {running} != balance {self.balance}")
        self.check()


class CaptureOutcome(Struct, frozen=True):
    """What settling a hold did, in credit units."""

    charged: int
    released: int
    forfeited: int
    uncollected: int


class ReleaseOutcome(Struct, frozen=True):
    released: int
    forfeited: int


class LedgerPosting:
    """Moves applied to one snapshot of an account; ``result()`` gives what to write."""

    def __init__(self, account: CreditAccount, at: datetime) -> None:
        account.check()
        self.before = account
        self.at = at
        self._lots: dict[str, CreditLot] = {lot.lot_id: lot for lot in account.lots}
        self._sequence = account.sequence
        self._balance = account.balance
        self._held = account.held
        self._last_topup = account.last_topup
        self._topup_sequence = account.topup_sequence
        self._fired = set(account.alerts_fired)
        self._topup_in_progress = False
        self.entries: list[LedgerEntry] = []
        self.alerts: list[Alert] = []

    # -- reading ---------------------------------------------------------------------------

    @property
    def balance(self) -> int:
        return self._balance

    def spendable(self) -> int:
        return spendable(self._lots.values(), self.at)

    def lot_is_open(self, lot_id: str) -> bool:
        """Whether the lot is open (held credits of a closed lot are forfeited when released)."""
        return self._lot_or_fail(lot_id).status is LotStatus.OPEN

    @property
    def changed(self) -> bool:
        """True when there is something to write: an entry, or a lot that changed status."""
        return (
            bool(self.entries)
            or any(self._lots.get(lot.lot_id) != lot for lot in self.before.lots)
            or len(self._lots) != len(self.before.lots)
        )

    def result(self) -> CreditAccount:
        """The account after every move, checked against the invariants."""
        lots = tuple(
            sorted(
                (lot for lot in self._lots.values() if not lot.is_finished),
                key=lambda lot: (lot.created_at, lot.lot_id),
            )
        )
        after = CreditAccount(
            org_id=self.before.org_id,
            sequence=self._sequence,
            balance=self._balance,
            held=self._held,
            lots=lots,
            last_topup=self._last_topup,
            topup_sequence=self._topup_sequence,
            alerts_fired=frozenset(self._fired),
            exists=True,
        )
        after.check()
        return after

    def lot_guards(self) -> dict[str, int]:
        """Per stored lot, the credits this posting takes from its ``remaining`` (net): the store
        writes each with the condition ``remaining >= taken``, so no lot can go below zero."""
        guards = {}
        for lot in self.before.lots:
            after = self._lots.get(lot.lot_id)
            taken = lot.remaining - (after.remaining if after else 0)
            if taken > 0:
                guards[lot.lot_id] = taken
        return guards

    # -- moves -----------------------------------------------------------------------------

    def add_lot(
        self,
        kind: LotKind,
        amount: int,
        entry_kind: EntryKind,
        *,
        reference: str | None,
        expires_at: datetime | None,
        note: str | None = None,
        priority: int | None = None,
        lot_id: str | None = None,
    ) -> CreditLot:
        """Credits arrive as a new lot. Purchases, bonuses, grants and renewals are top-ups: they
        re-arm the low-balance alerts, measured against the credits arrived in this posting."""
        if amount <= 0:
            raise ValueError("a lot must bring a positive amount")
        lot = CreditLot(
            lot_id=lot_id or new_id("lot"),
            kind=kind,
            priority=DEFAULT_PRIORITY[kind] if priority is None else priority,
            original=amount,
            remaining=amount,
            held=0,
            created_at=self.at,
            expires_at=expires_at,
            reference=reference,
        )
        self._lots[lot.lot_id] = lot
        entry = self._entry(
            entry_kind, amount, (LotDraw(lot.lot_id, amount),), reference, note, {"lot_kind": kind.value}
        )
        if entry_kind in _TOPUP_KINDS:
            if not self._topup_in_progress:
                self._topup_in_progress = True
                self._last_topup = 0
                self._topup_sequence = entry.sequence
                self._fired.clear()
            self._last_topup += amount
        return lot

    def hold(self, amount: int, reference: str) -> tuple[LotDraw, ...]:
        """Set ``amount`` aside for a reservation, taken from lots in spending order.
        Raises ``CreditShortage`` (nothing changed) when the spendable credits are short."""
        if amount == 0:
            return ()
        draws = allocate(self._lots.values(), amount, self.at)
        for draw in draws:
            self._take(draw.lot_id, -draw.amount, hold=True)
        self._entry(EntryKind.HOLD, -amount, draws, reference, None, {})
        return draws

    def capture(self, draws: Sequence[LotDraw], charge: int, reference: str) -> CaptureOutcome:
        """Settle a hold: charge ``charge`` credits, give back the rest of the hold.

        Held credits of lots since expired or refunded are charged first (they would otherwise
        be forfeited), then in the hold's spending order; whatever is not charged is released.
        A charge above the hold takes the difference from spendable credits as far as they go;
        what they cannot cover is ``uncollected`` (the balance never goes below zero).
        """
        if charge < 0:
            raise ValueError("a charge cannot be negative")
        held = -sum(d.amount for d in draws)
        ordered = sorted(draws, key=lambda d: self._lot_or_fail(d.lot_id).status is LotStatus.OPEN)
        to_capture = min(charge, held)
        captured_from: dict[str, int] = {}
        left = to_capture
        for draw in ordered:
            take = min(left, -draw.amount)
            if take:
                captured_from[draw.lot_id] = captured_from.get(draw.lot_id, 0) + take
            left -= take
        for lot_id, amount in captured_from.items():
            lot = self._lot_or_fail(lot_id)
            self._put(replace(lot, held=lot.held - amount))
            self._held -= amount
        extra_draws: tuple[LotDraw, ...] = ()
        uncollected = 0
        if charge > held:
            extra = charge - held
            takeable = min(extra, self.spendable())
            uncollected = extra - takeable
            extra_draws = allocate(self._lots.values(), takeable, self.at)
            for draw in extra_draws:
                self._take(draw.lot_id, -draw.amount, hold=False)
        charged = to_capture - sum(d.amount for d in extra_draws)
        self._entry(
            EntryKind.CAPTURE,
            sum(d.amount for d in extra_draws),
            extra_draws,
            reference,
            None,
            {"charged": charged, "held": held, "uncollected": uncollected},
        )
        rest = [LotDraw(lot_id, amount) for lot_id, amount in _subtract(draws, captured_from).items()]
        outcome = self._give_back(rest, reference)
        return CaptureOutcome(charged, outcome.released, outcome.forfeited, uncollected)

    def release(self, draws: Sequence[LotDraw], reference: str) -> ReleaseOutcome:
        """Give back everything a hold took. Credits of lots since expired or refunded come back
        and leave again at once (an ``expiry`` / ``refund`` entry): they never return to life."""
        return self._give_back([LotDraw(d.lot_id, -d.amount) for d in draws if d.amount], reference)

    def expire_due(self, limit: int = MAX_EXPIRIES_PER_POSTING) -> list[LedgerEntry]:
        """Expire open lots past their expiry (at most ``limit``, so one transaction stays within
        DynamoDB's 100 items; later postings take the rest): the remaining credits leave, one
        entry and one expiry alert per lot. Credits a lot has on hold stay held until settled."""
        expired = []
        due = [
            lot
            for lot in sorted(self._lots.values(), key=CreditLot.spending_key)
            if lot.status is LotStatus.OPEN and lot.is_due(self.at)
        ]
        for lot in due[:limit]:
            amount = lot.remaining
            if amount:
                self._take(lot.lot_id, amount, hold=False)
            self._put(replace(self._lots[lot.lot_id], status=LotStatus.EXPIRED))
            if amount:
                entry = self._entry(
                    EntryKind.EXPIRY,
                    -amount,
                    (LotDraw(lot.lot_id, -amount),),
                    lot.reference,
                    None,
                    {"lot_kind": lot.kind.value},
                )
                expired.append(entry)
                self._record_alert(AlertKind.EXPIRY, f"{entry.sequence:012d}-expiry", amount, None, entry)
        return expired

    def refund_lots(self, lot_ids: Iterable[str], reference: str) -> int:
        """A refunded purchase: the unspent credits of its lots leave; the lots close."""
        draws = []
        for lot_id in lot_ids:
            lot = self._lots.get(lot_id)
            if lot is None or lot.status is not LotStatus.OPEN:
                continue  # fully spent (gone), or already expired: nothing unspent to take back
            if lot.remaining:
                draws.append(LotDraw(lot_id, -lot.remaining))
                self._take(lot_id, lot.remaining, hold=False)
            self._put(replace(self._lots[lot_id], status=LotStatus.REFUNDED))
        amount = -sum(d.amount for d in draws)
        if amount:
            self._entry(EntryKind.REFUND, -amount, tuple(draws), reference, None, {})
        return amount

    def take(self, amount: int, entry_kind: EntryKind, reference: str | None, note: str | None) -> int:
        """Take up to ``amount`` spendable credits in spending order (a negative adjustment)."""
        takeable = min(amount, self.spendable())
        if takeable <= 0:
            return 0
        draws = allocate(self._lots.values(), takeable, self.at)
        for draw in draws:
            self._take(draw.lot_id, -draw.amount, hold=False)
        self._entry(entry_kind, -takeable, draws, reference, note, {})
        return takeable

    # -- internals -------------------------------------------------------------------------

    def _lot_or_fail(self, lot_id: str) -> CreditLot:
        lot = self._lots.get(lot_id)
        if lot is None:
            # A lot is only dropped once nothing is held from it, so a hold's lot is always here.
            raise LedgerInvariantBroken(f"{self.before.org_id}: held lot {lot_id} is missing")
        return lot

    def _put(self, lot: CreditLot) -> None:
        if lot.remaining < 0 or lot.held < 0:
            raise LedgerInvariantBroken(f"{self.before.org_id}: lot {lot.lot_id} would go below zero")
        self._lots[lot.lot_id] = lot

    def _take(self, lot_id: str, amount: int, *, hold: bool) -> None:
        lot = self._lot_or_fail(lot_id)
        self._put(replace(lot, remaining=lot.remaining - amount, held=lot.held + (amount if hold else 0)))
        if hold:
            self._held += amount

    def _give_back(self, draws: Sequence[LotDraw], reference: str) -> ReleaseOutcome:
        """Return held credits (positive draws) to their lots; closed lots forfeit them again."""
        returned = [d for d in draws if d.amount > 0]
        if not returned:
            return ReleaseOutcome(0, 0)
        forfeits: dict[LotStatus, list[LotDraw]] = {}
        for draw in returned:
            lot = self._lot_or_fail(draw.lot_id)
            self._put(replace(lot, held=lot.held - draw.amount, remaining=lot.remaining + draw.amount))
            self._held -= draw.amount
            if lot.status is not LotStatus.OPEN:
                forfeits.setdefault(lot.status, []).append(LotDraw(draw.lot_id, -draw.amount))
        total = sum(d.amount for d in returned)
        self._entry(EntryKind.RELEASE, total, tuple(returned), reference, None, {})
        forfeited = 0
        for status, lost in forfeits.items():
            amount = -sum(d.amount for d in lost)
            for draw in lost:
                self._take(draw.lot_id, -draw.amount, hold=False)
            kind = EntryKind.EXPIRY if status is LotStatus.EXPIRED else EntryKind.REFUND
            self._entry(kind, -amount, tuple(lost), reference, "held credits of a closed lot", {})
            forfeited += amount
        return ReleaseOutcome(total - forfeited, forfeited)

    def _entry(
        self,
        kind: EntryKind,
        amount: int,
        lots: tuple[LotDraw, ...],
        reference: str | None,
        note: str | None,
        details: dict[str, int | str],
    ) -> LedgerEntry:
        self._sequence += 1
        balance_before = self._balance
        self._balance += amount
        if self._balance < 0:
            raise LedgerInvariantBroken(f"{self.before.org_id}: balance would go below zero")
        entry = LedgerEntry(
            org_id=self.before.org_id,
            sequence=self._sequence,
            kind=kind,
            amount=amount,
            balance_after=self._balance,
            lots=lots,
            reference=reference,
            at=self.at,
            note=note,
            details=details,
        )
        self.entries.append(entry)
        if amount < 0 and self._balance < balance_before:
            self._check_thresholds(entry)
        return entry

    def _check_thresholds(self, entry: LedgerEntry) -> None:
        for percent in crossed_thresholds(self._last_topup, self._fired, self._balance):
            self._fired.add(percent)
            kind = AlertKind.DEPLETED if percent == 0 else AlertKind.LOW_BALANCE
            self._record_alert(
                kind,
                f"{self._topup_sequence:012d}-{percent:03d}",
                threshold_units(self._last_topup, percent),
                percent,
                entry,
            )

    def _record_alert(
        self, kind: AlertKind, alert_id: str, threshold: int, percent: int | None, entry: LedgerEntry
    ) -> None:
        self.alerts.append(
            Alert(
                alert_id=alert_id,
                org_id=self.before.org_id,
                kind=kind,
                threshold=threshold,
                threshold_percent=percent,
                balance=entry.balance_after,
                topup_reference=str(self._topup_sequence) if percent is not None else entry.reference,
                at=self.at,
                published=False,
                sequence=entry.sequence,
            )
        )


def _subtract(draws: Sequence[LotDraw], captured: dict[str, int]) -> dict[str, int]:
    """Per lot: what a hold drew minus what was captured from it (positive: to give back)."""
    rest: dict[str, int] = {}
    for draw in draws:
        rest[draw.lot_id] = rest.get(draw.lot_id, 0) - draw.amount
    for lot_id, amount in captured.items():
        rest[lot_id] -= amount
    return {lot_id: amount for lot_id, amount in rest.items() if amount}


__all__ = ["CaptureOutcome", "CreditAccount", "CreditShortage", "LedgerPosting", "ReleaseOutcome"]
