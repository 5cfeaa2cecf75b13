"""The metering API: the one place where requests are limited and charged.

Every feature calls ``reserve`` before it spends anything, then ``settle`` with the actual
usage, or ``release`` when the call failed. The credits/limits endpoints, the purchase
webhook and the scheduler call the ledger methods below.

Amounts: credits in integer units of 1/10,000 credit, provider cost in integer micro-USD.

Every write is one ``MeteringCommit`` built from one snapshot (one read) and written in one
DynamoDB transaction conditioned on that snapshot. When another writer got there first the
commit raises ``CommitRaced`` and the step is recomputed from a fresh read, with jittered
backoff: a refusal is only ever for a real limit or a real shortage, never for contention.
"""

from __future__ import annotations

import base64
import binascii
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from aws_lambda_powertools import Logger
from msgspec.structs import replace

from tollgate.clock import Clock, SystemClock, iso
from tollgate.errors import (
    Conflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
)
from tollgate.identity.models import Caller
from tollgate.ids import new_id
from tollgate.metering.batches import MAX_BATCH_PARTS, closing_status, part_share, with_part
from tollgate.metering.ledger import CaptureOutcome, CreditAccount, LedgerPosting
from tollgate.metering.limits import (
    ApplicableLimit,
    all_limits,
    applicable_limits,
    merge_limits,
    usage_amount,
)
from tollgate.metering.lots import CreditShortage, LotStatus
from tollgate.metering.models import (
    CREDIT_UNITS,
    Alert,
    Availability,
    Balance,
    Charge,
    CountedUsage,
    EntryKind,
    EntryPage,
    GrantResult,
    LedgerEntry,
    LimitStatus,
    LotDraw,
    LotKind,
    LotView,
    Purchase,
    PurchasePage,
    PurchaseStatus,
    Release,
    RenewalResult,
    Reservation,
    ReservationPart,
    ReservationStatus,
    Settlement,
    StaleSweep,
    Usage,
)
from tollgate.metering.ports import (
    AccountChange,
    CommitRaced,
    CounterChange,
    LimitReached,
    MeteringCommit,
    MeteringSnapshot,
    MeteringStore,
    OperationDone,
    OperationMarker,
    OrgProfile,
    PurchaseExists,
    PurchaseTransition,
    ReservationExists,
    ReservationTransition,
)
from tollgate.metering.pricing import FeatureRule, Pricing
from tollgate.metering.windows import add_months, billing_cycle
from tollgate.plans import Kind, LimitSpec, Plan, PlanCatalog, check_overrides
from tollgate.staging import StagedWrites

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

COUNTER_GRACE = timedelta(days=1)  # a counter item lives this long after its window ends (TTL)
MAX_ID_LENGTH = 200
MAX_PAGE = 200
DEFAULT_PLAN = "free"
KNOWN_ORGS = 1024  # accounts remembered per process (the optimistic first attempt)
KNOWN_RESERVATIONS = 1024  # reservations this process made and has not finished
OPTIMISM_PAUSE_SECONDS = 10.0  # after a race, an org's steps read first for this long

logger = Logger()


class ReservationReader(Protocol):
    def reservation(self, org_id: str, reservation_id: str) -> Reservation: ...


def settled_despite_failure(
    metering: ReservationReader, org_id: str, reservation_id: str, release_held: Callable[[], None]
) -> Reservation | None:
    """After a settlement raised, or its answer was lost (AWS committed it, then the connection
    dropped), read the reservation back. Settled: it is returned, and the answer stands, charged
    once. Still held: ``release_held`` is called now, so that a failed answer does not hold the
    customer's credits until the stale-hold sweep; ``None``. Unreadable: ``None``, and the sweep
    releases it later."""
    try:
        reservation = metering.reservation(org_id, reservation_id)
    except Exception:
        logger.exception("could not read back a reservation whose settlement failed")
        return None
    if reservation.status is ReservationStatus.SETTLED:
        logger.warning("a settlement reported failed had committed", extra={"reservation_id": reservation_id})
        return reservation
    if reservation.status is ReservationStatus.HELD:
        release_held()
    return None


class _Unverified(Exception):
    """A step would refuse on a state it did not read (the optimistic attempt): read, decide."""


class _Recent(Generic[K, V]):
    """A small LRU map, safe to share between threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)


def _limit_overrides(raw: Sequence[Mapping[str, Any]]) -> tuple[LimitSpec, ...]:
    return tuple(LimitSpec.model_validate(spec) for spec in raw)


def _check_id(value: str, what: str) -> None:
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise InvalidRequest(f"Invalid {what}: 1 to {MAX_ID_LENGTH} printable characters")


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, prefix: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("Invalid cursor") from None
    if not text.startswith(prefix):
        raise InvalidRequest("Invalid cursor")
    return text[len(prefix) :]


def _check_page_size(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")


class MeteringService:
    """Limits, quotas and the credit ledger of every org, over a ``MeteringStore``."""

    def __init__(
        self,
        store: MeteringStore,
        pricing: Pricing,
        plans: PlanCatalog,
        clock: Clock | None = None,
        *,
        purchase_validity_months: int = 6,
        max_attempts: int = 100,
        backoff_base: float = 0.01,
        backoff_cap: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._pricing = pricing
        self._plans = plans
        self._clock = clock or SystemClock()
        self._purchase_validity_months = purchase_validity_months
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._random = random.Random()  # noqa: S311 - jitter, not a secret
        self._monotonic = monotonic
        self.raced = 0  # commits that lost a race and were recomputed (for benchmarks)
        # What this process last saw of each org's account, and the reservations it holds: the
        # first attempt of a request-path step starts from them instead of a read (_snapshot).
        self._known: _Recent[str, CreditAccount] = _Recent(KNOWN_ORGS)
        self._held: _Recent[str, Reservation] = _Recent(KNOWN_RESERVATIONS)
        self._contended: dict[str, float] = {}
        self._catalog_dumps: dict[str, dict[str, Any]] = {}

    @property
    def pricing(self) -> Pricing:
        return self._pricing

    # -- the request path ------------------------------------------------------------------

    def reserve(
        self, caller: Caller, feature: str | FeatureRule, estimate: Usage, reservation_id: str
    ) -> Reservation:
        """Count the request in every applicable limit and hold its estimated credits, atomically.

        One DynamoDB transaction: every limit counter (with its bound as a condition), the
        account and its lots, a ``hold`` ledger entry and the reservation item (written only if
        absent). The same ``reservation_id`` twice acts once and returns the first reservation.

        Raises ``RateLimited`` (a requests limit) or ``QuotaExceeded`` (a tokens or cost limit),
        both 429 with ``Retry-After`` and ``RateLimit-*`` headers and ``extra={"limit": ...}``;
        ``InsufficientCredits`` (402) with ``extra={"needed": units, "available": units}``.
        Nothing is counted or held when it refuses.
        """
        org_id = self._org_of(caller)
        _check_id(reservation_id, "reservation id")
        rule = self._pricing.features.resolve(feature)
        charge = self._pricing.charge(rule, estimate)

        def attempt(fresh: bool) -> Reservation:
            now = self._clock.now()
            snapshot = self._snapshot(org_id, caller, fresh, reservation_id=reservation_id)
            if snapshot.reservation is not None:
                return snapshot.reservation
            limits, counted, changes = self._count(snapshot.profile, caller, rule, estimate, charge, now)
            posting = LedgerPosting(snapshot.account, now)
            posting.expire_due()
            try:
                draws = posting.hold(charge.credits, reservation_id)
            except CreditShortage as short:
                if not snapshot.read:
                    raise _Unverified from None  # refuse only on what a read says
                raise self._shortage(short.needed, short.available) from None
            reservation = Reservation(
                reservation_id=reservation_id,
                org_id=org_id,
                user=caller.user,
                feature=rule.name,
                status=ReservationStatus.HELD,
                held_credits=charge.credits,
                estimate=charge,
                draws=draws,
                counted=counted,
                balance_after=posting.balance,
                created_at=now,
                pricing_rule=self._rule_dump(rule),
            )
            try:
                self._commit_posting(org_id, posting, counters=changes, new_reservation=reservation)
            except ReservationExists as replay:
                return replay.existing
            except LimitReached as reached:
                raise self._limit_refusal(limits, reached.used, now) from None
            self._held.put(reservation_id, reservation)
            return reservation

        return self._attempts(attempt)

    def settle(
        self,
        org_id: str,
        reservation_id: str,
        actual: Usage,
        attach: Callable[[Settlement], StagedWrites | None] | None = None,
    ) -> Settlement:
        """Charge the actual usage of a held reservation and give the rest back.

        The actual credits come from the feature's pricing rule. When they exceed the hold, the
        extra is taken from the balance as far as it goes (never below zero) and the remainder
        is reported as ``uncollected_credits``. Token and cost counters are moved to the actual
        figures. ``attach`` gives, for the settlement, what other stores write with it (the
        request's record and usage log entry): all in one transaction. Idempotent: settling
        twice returns the first settlement (and writes nothing). ``Conflict`` if the reservation
        was released; ``NotFound`` if there is no such reservation in this org.
        """
        _check_id(reservation_id, "reservation id")

        def attempt(fresh: bool) -> Settlement:
            now = self._clock.now()
            snapshot = self._snapshot(org_id, None, fresh, reservation_id=reservation_id, held=True)
            held = self._existing(snapshot, org_id, reservation_id)
            if held.is_batch:
                raise Conflict(f"Reservation {reservation_id} is a batch: its parts settle one by one")
            if held.status is ReservationStatus.SETTLED and held.settlement is not None:
                return held.settlement  # settled before: act once
            self._require_held(held)
            rule = self._rule_of(held)
            charge = self._pricing.charge(rule, actual)
            posting = LedgerPosting(snapshot.account, now)
            posting.expire_due()
            outcome = (
                posting.capture(held.draws, charge.credits, reservation_id)
                if held.held_credits or charge.credits
                else CaptureOutcome(0, 0, 0, 0)
            )
            counters = [
                CounterChange(c.counter_key, delta, None, c.window_end + COUNTER_GRACE)
                for c in held.counted
                if c.metric != "requests"
                and c.window_end > now
                and (delta := usage_amount(c.metric, charge) - c.amount) != 0
            ]
            settlement = Settlement(
                reservation_id=reservation_id,
                org_id=org_id,
                actual=charge,
                held_credits=held.held_credits,
                charged_credits=outcome.charged,
                released_credits=outcome.released,
                uncollected_credits=outcome.uncollected,
                forfeited_credits=outcome.forfeited,
                balance_after=posting.balance,
                settled_at=now,
            )
            self._commit_posting(
                org_id,
                posting,
                counters=counters,
                reservation=ReservationTransition(
                    replace(held, status=ReservationStatus.SETTLED, settlement=settlement),
                    ReservationStatus.HELD,
                ),
                staged=attach(settlement) if attach else None,
            )
            self._held.pop(reservation_id)
            return settlement

        return self._attempts(attempt)

    def release(
        self,
        org_id: str,
        reservation_id: str,
        attach: Callable[[Release], StagedWrites | None] | None = None,
    ) -> Release:
        """Give back everything a held reservation holds and un-count what it counted.

        ``attach`` gives what other stores write with the release (the failed request's record
        and usage log entry), in the same transaction. Idempotent: releasing twice returns the
        first release. ``Conflict`` if it was settled; ``NotFound`` if there is no such
        reservation in this org. A batch reservation releases every part still open (what the
        stale-hold sweep needs); ``attach`` does not apply to it.
        """
        _check_id(reservation_id, "reservation id")

        def attempt(fresh: bool) -> Release:
            now = self._clock.now()
            snapshot = self._snapshot(org_id, None, fresh, reservation_id=reservation_id, held=True)
            held = self._existing(snapshot, org_id, reservation_id)
            if held.is_batch:
                return self._release_open_parts(org_id, snapshot, held, now)
            if held.status is ReservationStatus.RELEASED and held.release is not None:
                return held.release  # released before: act once
            self._require_held(held)
            posting = LedgerPosting(snapshot.account, now)
            posting.expire_due()
            outcome = posting.release(held.draws, reservation_id)
            counters = [
                CounterChange(c.counter_key, -c.amount, None, c.window_end + COUNTER_GRACE)
                for c in held.counted
                if c.amount and c.window_end > now
            ]
            released = Release(
                reservation_id=reservation_id,
                org_id=org_id,
                released_credits=outcome.released,
                forfeited_credits=outcome.forfeited,
                balance_after=posting.balance,
                released_at=now,
            )
            self._commit_posting(
                org_id,
                posting,
                counters=counters,
                reservation=ReservationTransition(
                    replace(held, status=ReservationStatus.RELEASED, release=released),
                    ReservationStatus.HELD,
                ),
                staged=attach(released) if attach else None,
            )
            self._held.pop(reservation_id)
            return released

        return self._attempts(attempt)

    def charge(
        self,
        caller: Caller,
        feature: str | FeatureRule,
        usage: Usage,
        reservation_id: str,
        attach: Callable[[Settlement], StagedWrites | None] | None = None,
    ) -> Settlement:
        """Reserve and settle in one step, for an answer already in hand (a cache hit).

        The request is counted in its limits and charged ``usage`` at once; the reservation is
        written settled. When the charge is free (the default for cache hits) no credit moves,
        so the account is not even read: one write in all. Refusals as ``reserve``; the same
        ``reservation_id`` twice charges once and returns the first settlement.
        """
        org_id = self._org_of(caller)
        _check_id(reservation_id, "reservation id")
        rule = self._pricing.features.resolve(feature)
        price = self._pricing.charge(rule, usage)

        def attempt(fresh: bool) -> Settlement:
            now = self._clock.now()
            snapshot = (
                self._snapshot(org_id, caller, fresh, reservation_id=reservation_id)
                if price.credits or fresh or caller.org is None
                else MeteringSnapshot(CreditAccount(org_id=org_id), self._caller_profile(caller), read=False)
            )
            if snapshot.reservation is not None:
                return self._replayed_settlement(snapshot.reservation)
            limits, counted, changes = self._count(snapshot.profile, caller, rule, usage, price, now)
            posting = LedgerPosting(snapshot.account, now)
            draws: tuple[LotDraw, ...] = ()
            outcome = CaptureOutcome(0, 0, 0, 0)
            if price.credits:
                posting.expire_due()
                try:
                    draws = posting.hold(price.credits, reservation_id)
                except CreditShortage as short:
                    if not snapshot.read:
                        raise _Unverified from None
                    raise self._shortage(short.needed, short.available) from None
                outcome = posting.capture(draws, price.credits, reservation_id)
            settlement = Settlement(
                reservation_id=reservation_id,
                org_id=org_id,
                actual=price,
                held_credits=price.credits,
                charged_credits=outcome.charged,
                released_credits=outcome.released,
                uncollected_credits=outcome.uncollected,
                forfeited_credits=outcome.forfeited,
                balance_after=posting.balance,
                settled_at=now,
            )
            reservation = Reservation(
                reservation_id=reservation_id,
                org_id=org_id,
                user=caller.user,
                feature=rule.name,
                status=ReservationStatus.SETTLED,
                held_credits=price.credits,
                estimate=price,
                draws=draws,
                counted=counted,
                balance_after=posting.balance,
                created_at=now,
                settlement=settlement,
                pricing_rule=self._rule_dump(rule),
            )
            try:
                self._commit_posting(
                    org_id,
                    posting,
                    counters=changes,
                    new_reservation=reservation,
                    staged=attach(settlement) if attach else None,
                )
            except ReservationExists as replay:
                return self._replayed_settlement(replay.existing)
            except LimitReached as reached:
                raise self._limit_refusal(limits, reached.used, now) from None
            return settlement

        return self._attempts(attempt)

    # -- batches: one reservation for many requests --------------------------------------------

    def reserve_batch(
        self,
        caller: Caller,
        feature: str | FeatureRule,
        parts: Sequence[tuple[str, Usage]],
        reservation_id: str,
    ) -> Reservation:
        """Reserve a whole batch at once: all of it or none of it.

        ``parts`` are (part id, estimate) pairs, at most ``MAX_BATCH_PARTS``. In one DynamoDB
        transaction every part is counted in every limit that applies to it (N images are N
        requests), the sum of their estimated credits is held, and the reservation item (holding
        every part) is written only if absent. A batch over a limit is refused whole, as one
        that the org cannot afford: ``RateLimited``, ``QuotaExceeded`` or
        ``InsufficientCredits``, with nothing counted or held. The same ``reservation_id`` twice
        acts once. Each part then ends with ``settle_part`` or ``release_part``.
        """
        org_id = self._org_of(caller)
        _check_id(reservation_id, "reservation id")
        if not 1 <= len(parts) <= MAX_BATCH_PARTS:
            raise InvalidRequest(f"A batch has 1 to {MAX_BATCH_PARTS} parts")
        part_ids = [part_id for part_id, _ in parts]
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequest("Two parts of a batch have the same id")
        for part_id in part_ids:
            _check_id(part_id, "part id")
        rule = self._pricing.features.resolve(feature)
        priced = [(usage, self._pricing.charge(rule, usage)) for _, usage in parts]
        total = Charge(
            feature=rule.name,
            rule=rule.rule,
            cost_micro_usd=sum(charge.cost_micro_usd for _, charge in priced),
            credits=sum(charge.credits for _, charge in priced),
            tokens=sum(charge.tokens for _, charge in priced),
        )

        def attempt(fresh: bool) -> Reservation:
            now = self._clock.now()
            snapshot = self._snapshot(org_id, caller, fresh, reservation_id=reservation_id)
            if snapshot.reservation is not None:
                return snapshot.reservation
            limits, counted, per_part, changes = self._count_parts(
                snapshot.profile, caller, rule, priced, now
            )
            posting = LedgerPosting(snapshot.account, now)
            posting.expire_due()
            try:
                draws = posting.hold(total.credits, reservation_id)
            except CreditShortage as short:
                if not snapshot.read:
                    raise _Unverified from None
                raise self._shortage(short.needed, short.available) from None
            reservation = Reservation(
                reservation_id=reservation_id,
                org_id=org_id,
                user=caller.user,
                feature=rule.name,
                status=ReservationStatus.HELD,
                held_credits=total.credits,
                estimate=total,
                draws=draws,
                counted=counted,
                balance_after=posting.balance,
                created_at=now,
                pricing_rule=self._rule_dump(rule),
                parts=tuple(
                    ReservationPart(part_id, charge, part_counted)
                    for part_id, (_, charge), part_counted in zip(part_ids, priced, per_part, strict=True)
                ),
            )
            try:
                self._commit_posting(org_id, posting, counters=changes, new_reservation=reservation)
            except ReservationExists as replay:
                return replay.existing
            except LimitReached as reached:
                raise self._limit_refusal(limits, reached.used, now) from None
            return reservation

        return self._attempts(attempt)

    def settle_part(
        self,
        org_id: str,
        reservation_id: str,
        part_id: str,
        actual: Usage,
        attach: Callable[[Settlement], StagedWrites | None] | None = None,
    ) -> Settlement:
        """Charge one part of a batch reservation its actual usage, as ``settle`` does for a
        reservation of its own: its share of the batch's hold (its estimate) is captured, the
        rest of that share goes back, and its token and cost counters move to the actual.

        Each part settles at most once: the reservation is written only over the version it
        was read at, so two workers settling parts at once never lose a move (the later one
        reads again). Settling a settled part returns its settlement; ``Conflict`` if it was
        released; ``NotFound`` for an unknown reservation or part. The reservation closes with
        its last part.
        """
        _check_id(reservation_id, "reservation id")

        def attempt(fresh: bool) -> Settlement:
            now = self._clock.now()
            snapshot = self._read(org_id, reservation_id)
            held, part = self._existing_part(snapshot, org_id, reservation_id, part_id)
            if part.status is ReservationStatus.SETTLED and part.settlement is not None:
                return part.settlement  # settled before: act once
            if not part.is_open:
                raise Conflict(
                    f"Part {part_id} of reservation {reservation_id} is already {part.status.value}"
                )
            charge = self._pricing.charge(self._rule_of(held), actual)
            share = part_share(held, part)
            posting = LedgerPosting(snapshot.account, now)
            posting.expire_due()
            outcome = (
                posting.capture(share, charge.credits, part_id)
                if part.estimate.credits or charge.credits
                else CaptureOutcome(0, 0, 0, 0)
            )
            counters = [
                CounterChange(c.counter_key, delta, None, c.window_end + COUNTER_GRACE)
                for c in part.counted
                if c.metric != "requests"
                and c.window_end > now
                and (delta := usage_amount(c.metric, charge) - c.amount) != 0
            ]
            settlement = Settlement(
                reservation_id=reservation_id,
                org_id=org_id,
                actual=charge,
                held_credits=part.estimate.credits,
                charged_credits=outcome.charged,
                released_credits=outcome.released,
                uncollected_credits=outcome.uncollected,
                forfeited_credits=outcome.forfeited,
                balance_after=posting.balance,
                settled_at=now,
                part_id=part_id,
            )
            done = replace(part, status=ReservationStatus.SETTLED, draws=share, settlement=settlement)
            self._commit_part(org_id, posting, held, done, counters, attach(settlement) if attach else None)
            return settlement

        return self._attempts(attempt)

    def release_part(
        self,
        org_id: str,
        reservation_id: str,
        part_id: str,
        attach: Callable[[Release], StagedWrites | None] | None = None,
    ) -> Release:
        """Give back one part's share of a batch's hold and un-count everything that part
        counted (its request included), as ``release`` does for a reservation of its own.
        Releasing a released part returns its release; ``Conflict`` if it was settled."""
        _check_id(reservation_id, "reservation id")

        def attempt(fresh: bool) -> Release:
            now = self._clock.now()
            snapshot = self._read(org_id, reservation_id)
            held, part = self._existing_part(snapshot, org_id, reservation_id, part_id)
            if part.status is ReservationStatus.RELEASED and part.release is not None:
                return part.release  # released before: act once
            if not part.is_open:
                raise Conflict(
                    f"Part {part_id} of reservation {reservation_id} is already {part.status.value}"
                )
            share = part_share(held, part)
            posting = LedgerPosting(snapshot.account, now)
            posting.expire_due()
            outcome = posting.release(share, part_id)
            released = Release(
                reservation_id=reservation_id,
                org_id=org_id,
                released_credits=outcome.released,
                forfeited_credits=outcome.forfeited,
                balance_after=posting.balance,
                released_at=now,
                part_id=part_id,
            )
            done = replace(part, status=ReservationStatus.RELEASED, draws=share, release=released)
            self._commit_part(
                org_id,
                posting,
                held,
                done,
                self._uncount(part.counted, now),
                attach(released) if attach else None,
            )
            return released

        return self._attempts(attempt)

    def _release_open_parts(
        self, org_id: str, snapshot: MeteringSnapshot, held: Reservation, now: datetime
    ) -> Release:
        """Release every open part of a batch reservation in one move (the stale-hold sweep).
        One release entry for the whole remainder keeps the transaction small whatever the
        number of parts; each part still records its own share."""
        open_parts = [part for part in held.parts if part.is_open]
        if not open_parts:
            if held.release is not None:
                return held.release  # released before: act once
            raise Conflict(f"Reservation {held.reservation_id} is already {held.status.value}")
        posting = LedgerPosting(snapshot.account, now)
        posting.expire_due()
        parts = list(held.parts)
        shares: list[tuple[ReservationPart, tuple[LotDraw, ...]]] = []
        current = held
        for part in open_parts:
            share = part_share(current, part)
            shares.append((part, share))
            current = replace(
                current,
                parts=with_part(current, replace(part, status=ReservationStatus.RELEASED, draws=share)),
            )
        forfeits = {
            part.part_id: sum(-draw.amount for draw in share if not posting.lot_is_open(draw.lot_id))
            for part, share in shares
        }
        remainder = [draw for _, share in shares for draw in share]
        outcome = posting.release(remainder, held.reservation_id)
        released = Release(
            reservation_id=held.reservation_id,
            org_id=org_id,
            released_credits=outcome.released,
            forfeited_credits=outcome.forfeited,
            balance_after=posting.balance,
            released_at=now,
        )
        by_id = {
            part.part_id: replace(
                part,
                status=ReservationStatus.RELEASED,
                draws=share,
                release=Release(
                    reservation_id=held.reservation_id,
                    org_id=org_id,
                    released_credits=part.estimate.credits - forfeits[part.part_id],
                    forfeited_credits=forfeits[part.part_id],
                    balance_after=posting.balance,
                    released_at=now,
                    part_id=part.part_id,
                ),
            )
            for part, share in shares
        }
        parts = [by_id.get(part.part_id, part) for part in parts]
        counted = [c for part in open_parts for c in part.counted]
        after = replace(
            held,
            parts=tuple(parts),
            status=closing_status(parts),
            release=released,
            version=held.version + 1,
        )
        self._commit_posting(
            org_id,
            posting,
            counters=self._uncount(counted, now),
            reservation=ReservationTransition(after, ReservationStatus.HELD, held.version),
        )
        return released

    def _commit_part(
        self,
        org_id: str,
        posting: LedgerPosting,
        held: Reservation,
        done: ReservationPart,
        counters: Sequence[CounterChange],
        staged: StagedWrites | None,
    ) -> None:
        """Write one part's move: over the version of the reservation it was computed from,
        closing the reservation when it was the last open part."""
        parts = with_part(held, done)
        after = replace(held, parts=parts, status=closing_status(parts), version=held.version + 1)
        self._commit_posting(
            org_id,
            posting,
            counters=counters,
            reservation=ReservationTransition(after, ReservationStatus.HELD, held.version),
            staged=staged,
        )

    @staticmethod
    def _uncount(counted: Sequence[CountedUsage], now: datetime) -> list[CounterChange]:
        """Counter writes taking back what was counted (summed per counter), in windows still open."""
        totals: dict[str, tuple[int, datetime]] = {}
        for c in counted:
            if c.amount and c.window_end > now:
                amount, _ = totals.get(c.counter_key, (0, c.window_end))
                totals[c.counter_key] = (amount + c.amount, c.window_end)
        return [
            CounterChange(key, -amount, None, window_end + COUNTER_GRACE)
            for key, (amount, window_end) in totals.items()
        ]

    def _read(self, org_id: str, reservation_id: str) -> MeteringSnapshot:
        """One consistent read (batch parts are settled by other processes than the one that
        reserved them, so there is nothing to start from optimistically)."""
        snapshot = self._store.load(org_id, reservation_id=reservation_id)
        self._known.put(org_id, snapshot.account)
        return snapshot

    def _existing_part(
        self, snapshot: MeteringSnapshot, org_id: str, reservation_id: str, part_id: str
    ) -> tuple[Reservation, ReservationPart]:
        held = self._existing(snapshot, org_id, reservation_id)
        part = held.part(part_id)
        if part is None:
            raise NotFound(f"No part {part_id!r} in reservation {reservation_id!r}")
        return held, part

    def _count(
        self,
        profile: OrgProfile,
        caller: Caller,
        rule: FeatureRule,
        usage: Usage,
        charge: Charge,
        now: datetime,
    ) -> tuple[list[ApplicableLimit], tuple[CountedUsage, ...], list[CounterChange]]:
        """The limits a request counts in, what it counts, and the bounded counter writes.
        A request bigger than a limit on its own is refused here (nothing could ever fit it)."""
        limits, counted, _, changes = self._count_parts(profile, caller, rule, [(usage, charge)], now)
        return limits, counted, changes

    def _count_parts(
        self,
        profile: OrgProfile,
        caller: Caller,
        rule: FeatureRule,
        parts: Sequence[tuple[Usage, Charge]],
        now: datetime,
    ) -> tuple[
        list[ApplicableLimit], tuple[CountedUsage, ...], list[tuple[CountedUsage, ...]], list[CounterChange]
    ]:
        """For requests counted together (one, or the parts of a batch): the limits they count
        in, what they count in each counter in all, what each of them counts, and the bounded
        counter writes of the total. A total bigger than a limit on its own is refused here."""
        assert caller.org_id is not None
        limits: dict[str, ApplicableLimit] = {}
        totals: dict[str, int] = {}
        per_part: list[tuple[CountedUsage, ...]] = []
        for usage, charge in parts:
            counted: list[CountedUsage] = []
            for limit in self._request_limits(profile, caller, rule.kind, usage.provider, now):
                key = limit.counter_key
                amount = usage_amount(limit.spec.metric, charge)
                limits.setdefault(key, limit)
                totals[key] = totals.get(key, 0) + amount
                counted.append(CountedUsage(key, limit.spec.metric, amount, limit.window.end))
            per_part.append(tuple(counted))
        for key, total in totals.items():
            limit = limits[key]
            if total > limit.spec.max:
                used = self._store.counters(caller.org_id, [key]).get(key, 0)
                raise self._limit_refusal([limit], {key: used}, now, too_big=True)
        counted_total = tuple(
            CountedUsage(key, limits[key].spec.metric, total, limits[key].window.end)
            for key, total in totals.items()
        )
        changes = [
            CounterChange(key, total, limits[key].spec.max, limits[key].window.end + COUNTER_GRACE)
            for key, total in totals.items()
            if total
        ]
        return list(limits.values()), counted_total, per_part, changes

    @staticmethod
    def _replayed_settlement(reservation: Reservation) -> Settlement:
        if reservation.settlement is None:
            raise Conflict(f"Reservation {reservation.reservation_id} is {reservation.status.value}")
        return reservation.settlement

    def _snapshot(
        self,
        org_id: str,
        caller: Caller | None,
        fresh: bool,
        *,
        reservation_id: str,
        held: bool = False,
    ) -> MeteringSnapshot:
        """The state a request-path step starts from. Optimistically (``fresh`` False), what this
        process last saw of the account, the caller's org context, and (``held``) the
        reservation it made itself, with no read at all: the commit's conditions (the account's
        sequence, the reservation's status or absence) reject anything stale, and the retry
        reads. Otherwise one consistent read."""
        if not fresh and not self._optimism_paused(org_id):
            account = self._known.get(org_id)
            if account is not None:
                if held:
                    reservation = self._held.get(reservation_id)
                    if reservation is not None:
                        profile = OrgProfile(plan=None, exists=True)  # settle and release use no limits
                        return MeteringSnapshot(account, profile, reservation=reservation, read=False)
                elif caller is not None and caller.org is not None:
                    return MeteringSnapshot(account, self._caller_profile(caller), read=False)
        snapshot = self._store.load(org_id, reservation_id=reservation_id)
        self._known.put(org_id, snapshot.account)
        if caller is not None and caller.org is not None:
            snapshot = replace(snapshot, profile=self._caller_profile(caller))
        return snapshot

    def _caller_profile(self, caller: Caller) -> OrgProfile:
        """The org's metering profile as the authorizer handed it over."""
        org = caller.org
        assert org is not None
        return OrgProfile(
            plan=org.plan,
            billing_anchor_day=org.billing_anchor_day,
            limit_overrides=_limit_overrides(org.limit_overrides),
            exists=True,
        )

    def _rule_dump(self, rule: FeatureRule) -> dict[str, Any]:
        """The rule as a reservation keeps it (the price it was reserved at is the price it is
        settled at). The catalog's own rules are dumped once."""
        if self._pricing.features.features.get(rule.name) is rule:
            dumped = self._catalog_dumps.get(rule.name)
            if dumped is None:
                dumped = self._catalog_dumps[rule.name] = rule.model_dump(mode="json")
            return dict(dumped)
        return rule.model_dump(mode="json")

    def _rule_of(self, reservation: Reservation) -> FeatureRule | str:
        """The rule a reservation was priced by (kept on it: prices may change meanwhile); the
        catalog's own object when it is unchanged."""
        dumped = reservation.pricing_rule
        if not dumped:
            return reservation.feature
        name = str(dumped.get("name", ""))
        current = self._pricing.features.features.get(name)
        if current is not None and self._rule_dump(current) == dumped:
            return current
        return FeatureRule.model_validate(dumped)

    def _optimism_paused(self, org_id: str) -> bool:
        until = self._contended.get(org_id)
        return until is not None and until > self._monotonic()

    def release_stale(self, org_id: str, older_than: datetime) -> StaleSweep:
        """Release every reservation of the org still held and created before ``older_than``
        (for the scheduler: a Lambda that died between reserve and settle)."""
        released = []
        skipped = 0
        for reservation_id in self._store.held_reservations(org_id, older_than):
            try:
                released.append(self.release(org_id, reservation_id))
            except Conflict:
                skipped += 1  # settled meanwhile
        return StaleSweep(tuple(released), skipped)

    def reservation(self, org_id: str, reservation_id: str) -> Reservation:
        """One reservation of this org; ``NotFound`` otherwise."""
        _check_id(reservation_id, "reservation id")
        found = self._store.load(org_id, reservation_id=reservation_id).reservation
        if found is None:
            raise NotFound(f"No reservation {reservation_id!r}")
        return found

    # -- read-only checks ------------------------------------------------------------------

    def availability(self, caller: Caller, feature: str | FeatureRule, estimate: Usage) -> Availability:
        """Would ``reserve`` accept this now? Reads only; counts and holds nothing."""
        org_id = self._org_of(caller)
        rule = self._pricing.features.resolve(feature)
        charge = self._pricing.charge(rule, estimate)
        now = self._clock.now()
        snapshot = self._store.load(org_id)
        profile = self._caller_profile(caller) if caller.org is not None else snapshot.profile
        limits = self._request_limits(profile, caller, rule.kind, estimate.provider, now)
        used = self._store.counters(org_id, [limit.counter_key for limit in limits])
        statuses = tuple(self._status(limit, used.get(limit.counter_key, 0)) for limit in limits)
        blocked = [
            limit
            for limit in limits
            if (amount := usage_amount(limit.spec.metric, charge))
            and used.get(limit.counter_key, 0) + amount > limit.spec.max
        ]
        available = snapshot.account.spendable(now)
        if blocked:
            blocking = self._blocking(blocked)
            status = self._status(blocking, used.get(blocking.counter_key, 0))
            return Availability(
                False,
                blocking.refusal_code,
                blocking.window.seconds_until_end(now),
                charge.credits,
                available,
                status,
                statuses,
            )
        if charge.credits > available:
            return Availability(
                False, "insufficient_credits", None, charge.credits, available, None, statuses
            )
        return Availability(True, None, None, charge.credits, available, None, statuses)

    def limits_status(self, caller: Caller) -> list[LimitStatus]:
        """Every limit that applies to the caller (plan + org overrides), with used and reset time."""
        org_id = self._org_of(caller)
        now = self._clock.now()
        profile = self._caller_profile(caller) if caller.org is not None else self._store.load(org_id).profile
        limits = all_limits(
            self._limit_specs(profile, caller.plan),
            org_id=org_id,
            user=caller.user,
            at=now,
            anchor_day=profile.billing_anchor_day,
        )
        used = self._store.counters(org_id, [limit.counter_key for limit in limits])
        return [self._status(limit, used.get(limit.counter_key, 0)) for limit in limits]

    def applicable_limits(self, org_id: str, plan: str) -> list[LimitSpec]:
        """The org's limits: its plan's, with its overrides applied."""
        return self._limit_specs(self._store.load(org_id).profile, plan)

    def set_limit_overrides(self, org_id: str, overrides: Sequence[LimitSpec]) -> None:
        """Replace the org's limit overrides. A limit with the same (scope, metric, window, kind,
        provider) as a plan limit replaces it; any other is added."""
        try:
            check_overrides(overrides)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        self._store.save_limit_overrides(org_id, list(overrides))

    # -- the ledger ------------------------------------------------------------------------

    def balance(self, org_id: str) -> Balance:
        """The org's spendable balance, what is held, and its open lots. Lots past their expiry
        are expired first (the balance never shows credits that cannot be spent)."""
        now = self._clock.now()
        account = self._store.load(org_id).account
        if any(lot.is_due(now) and lot.status is LotStatus.OPEN for lot in account.lots):
            self.expire_lots(org_id, now)
            account = self._store.load(org_id).account
        lots = tuple(
            LotView(
                lot_id=lot.lot_id,
                kind=lot.kind,
                priority=lot.priority,
                remaining=lot.remaining,
                held=lot.held,
                original=lot.original,
                expires_at=lot.expires_at,
                created_at=lot.created_at,
                reference=lot.reference,
            )
            for lot in sorted(account.lots, key=lambda lot: lot.spending_key())
            if lot.status is LotStatus.OPEN
        )
        return Balance(org_id, account.balance, account.held, lots, account.last_topup, account.sequence)

    def transactions(self, org_id: str, cursor: str | None = None, limit: int = 50) -> EntryPage:
        """Ledger entries, newest first; pass ``next_cursor`` back for the next page.
        ``InvalidRequest`` for a malformed cursor."""
        _check_page_size(limit)
        before: int | None = None
        if cursor is not None:
            text = _decode_cursor(cursor, "entries:")
            if not text.isdigit():
                raise InvalidRequest("Invalid cursor")
            before = int(text)
        entries = self._store.entries(org_id, before, limit + 1)
        page = entries[:limit]
        next_cursor = _encode_cursor(f"entries:{page[-1].sequence}") if len(entries) > limit else None
        return EntryPage(tuple(page), next_cursor)

    def grant(
        self,
        org_id: str,
        amount: int,
        kind: LotKind = LotKind.GRANT,
        expires_at: datetime | None = None,
        operation_id: str | None = None,
        note: str | None = None,
    ) -> GrantResult:
        """Give the org a lot of ``amount`` credit units (kind grant, promo or bonus).

        Idempotent by ``operation_id`` (an OP item written in the same transaction): the same
        id twice grants once; the second call returns ``created=False``.
        """
        if amount <= 0:
            raise InvalidRequest("A grant must be a positive number of credits")
        if kind not in (LotKind.GRANT, LotKind.PROMO, LotKind.BONUS):
            raise InvalidRequest("A grant is of kind grant, promo or bonus")
        operation = f"grant:{operation_id or new_id('op')}"
        _check_id(operation, "operation id")
        entry_kind = EntryKind.BONUS if kind is LotKind.BONUS else EntryKind.GRANT

        def attempt() -> GrantResult:
            now = self._clock.now()
            if expires_at is not None and expires_at <= now:
                raise InvalidRequest("A grant must expire in the future")
            snapshot = self._store.load(org_id, operation_id=operation)
            if snapshot.operation is not None:
                return GrantResult(str(snapshot.operation["lot_id"]), None, created=False)
            posting = LedgerPosting(snapshot.account, now)
            posting.expire_due()
            lot = posting.add_lot(
                kind, amount, entry_kind, reference=operation_id, expires_at=expires_at, note=note
            )
            entry = posting.entries[-1]
            try:
                self._commit_posting(
                    org_id,
                    posting,
                    operation=OperationMarker(operation, {"lot_id": lot.lot_id, "sequence": entry.sequence}),
                )
            except OperationDone as done:
                return GrantResult(str(done.result["lot_id"]), None, created=False)
            return GrantResult(lot.lot_id, entry, created=True)

        return self._retrying(attempt)

    def create_purchase(
        self,
        org_id: str,
        purchase_id: str,
        package: str,
        credits: int,
        bonus_credits: int,
        price_micro_usd: int,
        created_by: str | None = None,
    ) -> Purchase:
        """Record a pending purchase of a package (the caller reads packages from its data file).
        The same ``purchase_id`` twice returns the first purchase."""
        _check_id(purchase_id, "purchase id")
        if credits <= 0 or bonus_credits < 0 or price_micro_usd < 0:
            raise InvalidRequest("A purchase needs positive credits, and no negative bonus or price")
        now = self._clock.now()
        purchase = Purchase(
            purchase_id=purchase_id,
            org_id=org_id,
            package=package,
            credits=credits,
            bonus_credits=bonus_credits,
            price_micro_usd=price_micro_usd,
            status=PurchaseStatus.PENDING,
            created_at=now,
            updated_at=now,
            created_by=created_by,
        )
        try:
            self._store.commit(MeteringCommit(org_id, new_purchase=purchase))
        except PurchaseExists as exists:
            return exists.existing
        return purchase

    def purchase(self, org_id: str, purchase_id: str) -> Purchase:
        """One purchase of this org; ``NotFound`` otherwise (also for another org's purchase)."""
        _check_id(purchase_id, "purchase id")
        found = self._store.load(org_id, purchase_id=purchase_id).purchase
        if found is None:
            raise NotFound(f"No purchase {purchase_id!r}")
        return found

    def purchases(self, org_id: str, cursor: str | None = None, limit: int = 50) -> PurchasePage:
        """The org's purchases, newest first."""
        _check_page_size(limit)
        position = _decode_cursor(cursor, "purchases:") if cursor is not None else None
        found, last = self._store.purchases(org_id, position, limit)
        return PurchasePage(tuple(found), _encode_cursor(f"purchases:{last}") if last else None)

    def complete_purchase(
        self, org_id: str, purchase_id: str, external_reference: str | None = None
    ) -> Purchase:
        """pending -> completed: the purchased and bonus credits arrive as two lots, once.

        Completing a completed purchase returns it unchanged (webhook retries); ``Conflict``
        from failed or refunded; ``NotFound`` if absent.
        """

        def move(purchase: Purchase, posting: LedgerPosting) -> Purchase:
            expires = add_months(posting.at, self._purchase_validity_months)
            lots = [
                posting.add_lot(
                    LotKind.PURCHASED,
                    purchase.credits,
                    EntryKind.PURCHASE,
                    reference=purchase_id,
                    expires_at=expires,
                ).lot_id
            ]
            if purchase.bonus_credits:
                lots.append(
                    posting.add_lot(
                        LotKind.BONUS,
                        purchase.bonus_credits,
                        EntryKind.BONUS,
                        reference=purchase_id,
                        expires_at=expires,
                    ).lot_id
                )
            return replace(
                purchase,
                status=PurchaseStatus.COMPLETED,
                updated_at=posting.at,
                lot_ids=tuple(lots),
                external_reference=external_reference or purchase.external_reference,
            )

        return self._transition_purchase(
            org_id, purchase_id, PurchaseStatus.PENDING, PurchaseStatus.COMPLETED, move
        )

    def fail_purchase(self, org_id: str, purchase_id: str, external_reference: str | None = None) -> Purchase:
        """pending -> failed (no credits). Failing a failed purchase returns it; ``Conflict`` otherwise."""

        def move(purchase: Purchase, posting: LedgerPosting) -> Purchase:
            return replace(
                purchase,
                status=PurchaseStatus.FAILED,
                updated_at=posting.at,
                external_reference=external_reference or purchase.external_reference,
            )

        return self._transition_purchase(
            org_id, purchase_id, PurchaseStatus.PENDING, PurchaseStatus.FAILED, move
        )

    def refund_purchase(
        self, org_id: str, purchase_id: str, external_reference: str | None = None
    ) -> Purchase:
        """completed -> refunded: the unspent credits of this purchase's lots leave, once.

        Credits already spent stay spent; credits held by requests in flight are forfeited
        when those requests release them. Refunding a refunded purchase returns it;
        ``Conflict`` from pending or failed.
        """

        def move(purchase: Purchase, posting: LedgerPosting) -> Purchase:
            taken = posting.refund_lots(purchase.lot_ids, purchase_id)
            return replace(
                purchase,
                status=PurchaseStatus.REFUNDED,
                updated_at=posting.at,
                refunded_credits=taken,
                external_reference=external_reference or purchase.external_reference,
            )

        return self._transition_purchase(
            org_id, purchase_id, PurchaseStatus.COMPLETED, PurchaseStatus.REFUNDED, move
        )

    def renew_subscription(
        self, org_id: str, cycle_start: datetime, amount: int | None = None
    ) -> RenewalResult:
        """Start the subscription cycle beginning at ``cycle_start``: a subscription lot of
        ``amount`` (default: the plan's monthly credits) expiring at the cycle's end; what is
        left of the previous cycle's lot expires. Once per cycle (safe to run twice or late)."""
        if amount is not None and amount < 0:
            raise InvalidRequest("A renewal amount cannot be negative")
        operation = f"renewal:{iso(cycle_start)}"

        def attempt() -> RenewalResult:
            now = self._clock.now()
            snapshot = self._store.load(org_id, operation_id=operation)
            start, end = billing_cycle(cycle_start, snapshot.profile.billing_anchor_day)
            if start != cycle_start:
                raise InvalidRequest(
                    f"{iso(cycle_start)} is not a cycle start of this org (next: {iso(end)})"
                )
            if snapshot.operation is not None:
                done = snapshot.operation
                lot_id = str(done["lot_id"]) or None
                return RenewalResult(org_id, start, end, False, lot_id, int(done["amount"]))
            credits = amount if amount is not None else self._plan(snapshot.profile.plan).monthly_credits
            if end <= now:
                return RenewalResult(org_id, start, end, False, None, 0)  # that cycle is over already
            posting = LedgerPosting(snapshot.account, max(now, start))
            posting.expire_due()
            lot_id = ""
            if credits:
                lot_id = posting.add_lot(
                    LotKind.SUBSCRIPTION,
                    credits,
                    EntryKind.SUBSCRIPTION_RENEWAL,
                    reference=operation,
                    expires_at=end,
                ).lot_id
            try:
                self._commit_posting(
                    org_id,
                    posting,
                    operation=OperationMarker(operation, {"lot_id": lot_id, "amount": credits}),
                )
            except OperationDone as done:
                return RenewalResult(
                    org_id, start, end, False, str(done.result["lot_id"]) or None, int(done.result["amount"])
                )
            return RenewalResult(org_id, start, end, True, lot_id or None, credits)

        return self._retrying(attempt)

    def current_cycle(self, org_id: str, at: datetime | None = None) -> tuple[datetime, datetime]:
        """The billing cycle containing ``at`` (default now), from the org's billing anchor day."""
        profile = self._store.load(org_id).profile
        return billing_cycle(at or self._clock.now(), profile.billing_anchor_day)

    def expire_lots(self, org_id: str, now: datetime | None = None) -> list[LedgerEntry]:
        """Expire every lot past its expiry that still has credits; records expiry alerts."""

        def attempt() -> list[LedgerEntry]:
            at = now or self._clock.now()
            posting = LedgerPosting(self._store.load(org_id).account, at)
            expired = posting.expire_due()
            if posting.changed:
                self._commit_posting(
                    org_id,
                    posting,
                )
            return expired

        return self._retrying(attempt)

    def adjust(self, org_id: str, amount: int, operation_id: str, note: str) -> LedgerEntry | None:
        """An operator correction: a positive amount adds a grant lot, a negative one takes
        credits in spending order (never below zero). Idempotent by ``operation_id``."""
        if amount == 0:
            raise InvalidRequest("An adjustment cannot be zero")
        operation = f"adjust:{operation_id}"
        _check_id(operation, "operation id")

        def attempt() -> LedgerEntry | None:
            snapshot = self._store.load(org_id, operation_id=operation)
            if snapshot.operation is not None:
                return None
            posting = LedgerPosting(snapshot.account, self._clock.now())
            posting.expire_due()
            if amount > 0:
                posting.add_lot(
                    LotKind.GRANT,
                    amount,
                    EntryKind.ADJUSTMENT,
                    reference=operation_id,
                    expires_at=None,
                    note=note,
                )
            elif posting.take(-amount, EntryKind.ADJUSTMENT, operation_id, note) == 0:
                return None
            entry = posting.entries[-1]
            try:
                self._commit_posting(
                    org_id,
                    posting,
                    operation=OperationMarker(operation, {"sequence": entry.sequence}),
                )
            except OperationDone:
                return None
            return entry

        return self._retrying(attempt)

    # -- alerts ----------------------------------------------------------------------------

    def alerts(self, org_id: str, limit: int = 50) -> list[Alert]:
        """The org's alerts, newest first."""
        _check_page_size(limit)
        return self._store.alerts(org_id, limit)

    def unpublished_alerts(self, limit: int = 100) -> list[Alert]:
        """Alerts of every org not yet published (for the publisher), oldest first."""
        _check_page_size(limit)
        return self._store.unpublished_alerts(limit)

    def mark_alert_published(self, org_id: str, alert_id: str) -> None:
        """Record that an alert was published (idempotent)."""
        self._store.mark_alert_published(org_id, alert_id)

    # -- internals -------------------------------------------------------------------------

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` until it is not raced, with full-jitter exponential backoff."""
        return self._attempts(lambda fresh: attempt())

    def _attempts(self, attempt: Callable[[bool], T]) -> T:
        """Run ``attempt(fresh)``: first optimistically (``fresh`` False), then from a read
        after a race (with full-jitter exponential backoff) or an unverified refusal."""
        fresh = False
        for tries in range(self._max_attempts):
            try:
                return attempt(fresh)
            except _Unverified:
                fresh = True
            except CommitRaced:
                fresh = True
                self.raced += 1
                ceiling = min(self._backoff_cap, self._backoff_base * (2 ** min(tries, 16)))
                self._sleep(self._random.uniform(0, ceiling))
        raise ServiceUnavailable(
            "The ledger is too busy right now; retry shortly", headers={"Retry-After": "1"}
        )

    @staticmethod
    def _org_of(caller: Caller) -> str:
        if caller.org_id is None:
            raise InvalidRequest("The platform admin key has no organization to meter")
        return caller.org_id

    def _plan(self, name: str | None) -> Plan:
        try:
            return self._plans.get(name or DEFAULT_PLAN)
        except KeyError:
            return self._plans.get(DEFAULT_PLAN)

    def _limit_specs(self, profile: OrgProfile, caller_plan: str | None) -> list[LimitSpec]:
        plan = self._plan(profile.plan or caller_plan)
        return merge_limits(plan.limits, profile.limit_overrides)

    def _request_limits(
        self, profile: OrgProfile, caller: Caller, kind: Kind | None, provider: str | None, at: datetime
    ) -> list[ApplicableLimit]:
        assert caller.org_id is not None
        return applicable_limits(
            self._limit_specs(profile, caller.plan),
            org_id=caller.org_id,
            user=caller.user,
            kind=kind,
            provider=provider,
            at=at,
            anchor_day=profile.billing_anchor_day,
        )

    def _commit_posting(
        self,
        org_id: str,
        posting: LedgerPosting,
        *,
        counters: Sequence[CounterChange] = (),
        new_reservation: Reservation | None = None,
        reservation: ReservationTransition | None = None,
        purchase: PurchaseTransition | None = None,
        operation: OperationMarker | None = None,
        staged: StagedWrites | None = None,
    ) -> None:
        """Write one ledger posting (account, entries, alerts) with what moves beside it, and
        remember the account it leaves (or forget it, when the commit lost a race)."""
        change = self._account_change(posting)
        try:
            self._store.commit(
                MeteringCommit(
                    org_id,
                    account=change,
                    entries=posting.entries,
                    alerts=posting.alerts,
                    counters=counters,
                    new_reservation=new_reservation,
                    reservation=reservation,
                    purchase=purchase,
                    operation=operation,
                    staged=(staged,) if staged is not None else (),
                )
            )
        except CommitRaced:
            self._known.pop(org_id)
            self._contended[org_id] = self._monotonic() + OPTIMISM_PAUSE_SECONDS
            raise
        if change is not None:
            self._known.put(org_id, change.after)

    @staticmethod
    def _account_change(posting: LedgerPosting) -> AccountChange | None:
        if not posting.changed:
            return None
        return AccountChange(posting.before, posting.result(), posting.lot_guards())

    @staticmethod
    def _status(limit: ApplicableLimit, used: int) -> LimitStatus:
        spec = limit.spec
        return LimitStatus(
            scope=spec.scope,
            subject=limit.subject,
            metric=spec.metric,
            window=spec.window,
            kind=spec.kind,
            provider=spec.provider,
            max=spec.max,
            used=used,
            remaining=max(0, spec.max - used),
            window_start=limit.window.start,
            resets_at=limit.window.end,
        )

    @staticmethod
    def _blocking(limits: Sequence[ApplicableLimit]) -> ApplicableLimit:
        """Of several full limits, the one that frees last (the request waits for all of them)."""
        return max(limits, key=lambda limit: (limit.window.end, limit.spec.metric == "requests"))

    def _limit_refusal(
        self, limits: Sequence[ApplicableLimit], used: dict[str, int], now: datetime, *, too_big: bool = False
    ) -> RateLimited | QuotaExceeded:
        full = [limit for limit in limits if limit.counter_key in used]
        blocking = self._blocking(full)
        status = self._status(blocking, used[blocking.counter_key])
        retry_after = blocking.window.seconds_until_end(now)
        spec = blocking.spec
        narrowed = "".join(
            f" for {part}" for part in (spec.kind, spec.provider and f"provider {spec.provider}") if part
        )
        named = f"{spec.scope} limit of {spec.max} {spec.metric} per {spec.window}{narrowed}"
        detail = (
            f"This request alone exceeds the {named}"
            if too_big
            else f"The {named} is reached; it resets at {iso(blocking.window.end)}"
        )
        error_class = RateLimited if spec.metric == "requests" else QuotaExceeded
        return error_class(
            detail,
            extra={"limit": status.describe(), "retry_after": retry_after},
            headers={
                "Retry-After": str(retry_after),
                "RateLimit-Limit": str(spec.max),
                "RateLimit-Remaining": str(status.remaining),
                "RateLimit-Reset": str(retry_after),
            },
        )

    @staticmethod
    def _shortage(needed: int, available: int) -> InsufficientCredits:
        return InsufficientCredits(
            f"This needs {needed / CREDIT_UNITS:.4f} credits; {available / CREDIT_UNITS:.4f} are available",
            extra={"needed": needed, "available": available, "units_per_credit": CREDIT_UNITS},
        )

    @staticmethod
    def _existing(snapshot: MeteringSnapshot, org_id: str, reservation_id: str) -> Reservation:
        found = snapshot.reservation
        if found is None or found.org_id != org_id:
            raise NotFound(f"No reservation {reservation_id!r}")
        return found

    @staticmethod
    def _require_held(reservation: Reservation) -> None:
        if reservation.status is not ReservationStatus.HELD:
            raise Conflict(f"Reservation {reservation.reservation_id} is already {reservation.status.value}")

    def _transition_purchase(
        self,
        org_id: str,
        purchase_id: str,
        source: PurchaseStatus,
        target: PurchaseStatus,
        move: Callable[[Purchase, LedgerPosting], Purchase],
    ) -> Purchase:
        _check_id(purchase_id, "purchase id")

        def attempt() -> Purchase:
            snapshot = self._store.load(org_id, purchase_id=purchase_id)
            purchase = snapshot.purchase
            if purchase is None:
                raise NotFound(f"No purchase {purchase_id!r}")
            if purchase.status is target:
                return purchase  # done before (a webhook retry): act once
            if purchase.status is not source:
                raise Conflict(
                    f"Purchase {purchase_id} is {purchase.status.value}; it cannot become {target.value}"
                )
            posting = LedgerPosting(snapshot.account, self._clock.now())
            posting.expire_due()
            after = move(purchase, posting)
            self._commit_posting(
                org_id,
                posting,
                purchase=PurchaseTransition(after, source),
            )
            return after

        return self._retrying(attempt)


__all__ = ["MeteringService"]
