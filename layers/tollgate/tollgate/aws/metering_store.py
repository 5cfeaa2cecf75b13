"""Metering in the Tollgate table: the adapter behind ``tollgate.metering.ports.MeteringStore``.

Items (single table; documented in docs/metering.md):
- account:     pk=ACCT#<org>         sk=ACCOUNT            balance, held, seq, lots (map), alert state
- operation:   pk=ACCT#<org>         sk=OP#<operation>     once-only marker (grant, renewal, adjustment)
- purchase:    pk=ACCT#<org>         sk=PURCHASE#<id>      gsi1pk=PURCHASES#<org> gsi1sk=<created>#<id>
- entry:       pk=LEDGER#<org>       sk=ENTRY#<seq:012d>   append-only
- reservation: pk=RES#<org>#<id>     sk=RES                gsi1pk=HELD#<org> gsi1sk=<created>#<id> while held
- counter:     pk=QUOTA#<org>        sk=C#<window>#<metric>#<scope>#<kind>#<provider>#<subject>
- alert:       pk=ALERTS#<org>       sk=ALERT#<alert id>   gsi1pk=ALERTS#UNPUBLISHED until published
- org (identity's item): pk=ORG#<org> sk=ORG: read for the plan and billing anchor; metering
  owns its ``limit_overrides`` attribute (JSON list of ``LimitSpec``)

Every commit is one ``TransactWriteItems``: moto ignores ClientRequestToken, so idempotency
rests on the explicit items written with ``attribute_not_exists`` in the same transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tollgate.aws.dynamodb import (
    ConditionFailed,
    DynamoStagedWrites,
    DynamoTable,
    Item,
    TransactionCancelled,
    Write,
    deserialize,
    put,
    raise_if_unavailable,
    serialize,
    update,
)
from tollgate.clock import epoch, parse_iso
from tollgate.errors import NotFound, ServiceUnavailable
from tollgate.metering.ledger import CreditAccount
from tollgate.metering.lots import CreditLot, LotStatus
from tollgate.metering.models import (
    Alert,
    AlertKind,
    Charge,
    CountedUsage,
    EntryKind,
    LedgerEntry,
    LotDraw,
    LotKind,
    Purchase,
    PurchaseStatus,
    Release,
    Reservation,
    ReservationPart,
    ReservationStatus,
    Settlement,
)
from tollgate.metering.ports import (
    AccountChange,
    CommitRaced,
    CounterChange,
    LimitReached,
    MeteringCommit,
    MeteringSnapshot,
    OperationDone,
    OrgProfile,
    PurchaseExists,
    ReservationExists,
    StagedWriteRefused,
)
from tollgate.plans import LimitSpec

GSI1 = "gsi1"
UNPUBLISHED = "ALERTS#UNPUBLISHED"
SETTLED_RESERVATION_TTL = 90 * 86_400  # a finished reservation stays 90 days (idempotent replays)
_BATCH_LIMIT = 100


# -- keys ---------------------------------------------------------------------------------------


def account_key(org_id: str) -> Item:
    return {"pk": f"ACCT#{org_id}", "sk": "ACCOUNT"}


def operation_key(org_id: str, operation_id: str) -> Item:
    return {"pk": f"ACCT#{org_id}", "sk": f"OP#{operation_id}"}


def purchase_key(org_id: str, purchase_id: str) -> Item:
    return {"pk": f"ACCT#{org_id}", "sk": f"PURCHASE#{purchase_id}"}


def entry_key(org_id: str, sequence: int) -> Item:
    return {"pk": f"LEDGER#{org_id}", "sk": f"ENTRY#{sequence:012d}"}


def reservation_key(org_id: str, reservation_id: str) -> Item:
    return {"pk": f"RES#{org_id}#{reservation_id}", "sk": "RES"}


def counter_key(org_id: str, key: str) -> Item:
    return {"pk": f"QUOTA#{org_id}", "sk": key}


def alert_key(org_id: str, alert_id: str) -> Item:
    return {"pk": f"ALERTS#{org_id}", "sk": f"ALERT#{alert_id}"}


def org_key(org_id: str) -> Item:
    return {"pk": f"ORG#{org_id}", "sk": "ORG"}


# -- values ---------------------------------------------------------------------------------------


def _time(moment: datetime) -> str:
    """Microsecond ISO 8601 in UTC: lot expiry and creation order must survive a round trip."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _maybe_time(value: Any) -> datetime | None:
    return parse_iso(value) if value else None


def _lot_to_map(lot: CreditLot) -> Item:
    return {
        "kind": lot.kind.value,
        "priority": lot.priority,
        "original": lot.original,
        "remaining": lot.remaining,
        "held": lot.held,
        "created_at": _time(lot.created_at),
        "expires_at": _time(lot.expires_at) if lot.expires_at else None,
        "status": lot.status.value,
        "reference": lot.reference,
    }


def _lot_from_map(lot_id: str, raw: Mapping[str, Any]) -> CreditLot:
    return CreditLot(
        lot_id=lot_id,
        kind=LotKind(raw["kind"]),
        priority=int(raw["priority"]),
        original=int(raw["original"]),
        remaining=int(raw["remaining"]),
        held=int(raw["held"]),
        created_at=parse_iso(raw["created_at"]),
        expires_at=_maybe_time(raw.get("expires_at")),
        status=LotStatus(raw.get("status", "open")),
        reference=raw.get("reference"),
    )


def account_from_item(org_id: str, item: Item | None) -> CreditAccount:
    if item is None or "seq" not in item:
        return CreditAccount(org_id=org_id)
    lots = tuple(_lot_from_map(lot_id, raw) for lot_id, raw in (item.get("lots") or {}).items())
    return CreditAccount(
        org_id=org_id,
        sequence=int(item["seq"]),
        balance=int(item["balance"]),
        held=int(item["held"]),
        lots=tuple(sorted(lots, key=lambda lot: (lot.created_at, lot.lot_id))),
        last_topup=int(item.get("last_topup", 0)),
        topup_sequence=int(item.get("topup_seq", 0)),
        alerts_fired=frozenset(int(p) for p in item.get("alerts_fired") or []),
        exists=True,
    )


def _draws(draws: Iterable[LotDraw]) -> list[Item]:
    return [{"lot_id": d.lot_id, "amount": d.amount} for d in draws]


def _draws_from(raw: Iterable[Mapping[str, Any]] | None) -> tuple[LotDraw, ...]:
    return tuple(LotDraw(str(d["lot_id"]), int(d["amount"])) for d in raw or [])


def _charge(charge: Charge) -> Item:
    return {
        "feature": charge.feature,
        "rule": charge.rule,
        "cost_micro_usd": charge.cost_micro_usd,
        "credits": charge.credits,
        "tokens": charge.tokens,
    }


def _charge_from(raw: Mapping[str, Any]) -> Charge:
    return Charge(
        str(raw["feature"]),
        str(raw["rule"]),
        int(raw["cost_micro_usd"]),
        int(raw["credits"]),
        int(raw["tokens"]),
    )


def _settlement(s: Settlement) -> Item:
    return {
        "actual": _charge(s.actual),
        "held_credits": s.held_credits,
        "charged_credits": s.charged_credits,
        "released_credits": s.released_credits,
        "uncollected_credits": s.uncollected_credits,
        "forfeited_credits": s.forfeited_credits,
        "balance_after": s.balance_after,
        "settled_at": _time(s.settled_at),
    }


def _settlement_from(
    reservation_id: str, org_id: str, raw: Mapping[str, Any], part_id: str | None = None
) -> Settlement:
    return Settlement(
        reservation_id=reservation_id,
        org_id=org_id,
        actual=_charge_from(raw["actual"]),
        held_credits=int(raw["held_credits"]),
        charged_credits=int(raw["charged_credits"]),
        released_credits=int(raw["released_credits"]),
        uncollected_credits=int(raw["uncollected_credits"]),
        forfeited_credits=int(raw["forfeited_credits"]),
        balance_after=int(raw["balance_after"]),
        settled_at=parse_iso(raw["settled_at"]),
        part_id=part_id,
    )


def _release(r: Release) -> Item:
    return {
        "released_credits": r.released_credits,
        "forfeited_credits": r.forfeited_credits,
        "balance_after": r.balance_after,
        "released_at": _time(r.released_at),
    }


def _release_from(
    reservation_id: str, org_id: str, raw: Mapping[str, Any], part_id: str | None = None
) -> Release:
    return Release(
        reservation_id=reservation_id,
        org_id=org_id,
        released_credits=int(raw["released_credits"]),
        forfeited_credits=int(raw["forfeited_credits"]),
        balance_after=int(raw["balance_after"]),
        released_at=parse_iso(raw["released_at"]),
        part_id=part_id,
    )


def _part(part: ReservationPart, counter_index: Mapping[str, int]) -> Item:
    # A part's counters are the batch's (by index into its ``counted``): the item stays small.
    return {
        "id": part.part_id,
        "estimate": _charge(part.estimate),
        "counted": [[counter_index[c.counter_key], c.amount] for c in part.counted],
        "status": part.status.value,
        "draws": _draws(part.draws),
        "settlement": _settlement(part.settlement) if part.settlement else None,
        "release": _release(part.release) if part.release else None,
    }


def _part_from(
    reservation_id: str, org_id: str, raw: Mapping[str, Any], counted: Sequence[CountedUsage]
) -> ReservationPart:
    part_id = str(raw["id"])
    settlement = raw.get("settlement")
    release = raw.get("release")
    return ReservationPart(
        part_id=part_id,
        estimate=_charge_from(raw["estimate"]),
        counted=tuple(
            CountedUsage(
                counted[index].counter_key, counted[index].metric, int(amount), counted[index].window_end
            )
            for index, amount in raw.get("counted") or []
        ),
        status=ReservationStatus(raw["status"]),
        draws=_draws_from(raw.get("draws")),
        settlement=_settlement_from(reservation_id, org_id, settlement, part_id) if settlement else None,
        release=_release_from(reservation_id, org_id, release, part_id) if release else None,
    )


def reservation_to_item(r: Reservation) -> Item:
    # What no condition or index needs goes into one JSON body: fewer attributes to (de)serialize.
    body: Item = {
        "user": r.user,
        "feature": r.feature,
        "held_credits": r.held_credits,
        "estimate": _charge(r.estimate),
        "draws": _draws(r.draws),
        "counted": [
            {"key": c.counter_key, "metric": c.metric, "amount": c.amount, "window_end": _time(c.window_end)}
            for c in r.counted
        ],
        "balance_after": r.balance_after,
        "pricing_rule": r.pricing_rule,
        "settlement": _settlement(r.settlement) if r.settlement else None,
        "release": _release(r.release) if r.release else None,
    }
    if r.parts:
        index = {c.counter_key: number for number, c in enumerate(r.counted)}
        body["parts"] = [_part(part, index) for part in r.parts]
    item: Item = {
        **reservation_key(r.org_id, r.reservation_id),
        "type": "reservation",
        "reservation_id": r.reservation_id,
        "org_id": r.org_id,
        "status": r.status.value,
        "created_at": _time(r.created_at),
        "body": json.dumps(body, sort_keys=True, separators=(",", ":")),
    }
    if r.parts:
        item["version"] = r.version  # the condition of every part's move
    if r.status is ReservationStatus.HELD:
        # Sparse index of what is still held, for the stale-hold sweep.
        item["gsi1pk"] = f"HELD#{r.org_id}"
        item["gsi1sk"] = f"{_time(r.created_at)}#{r.reservation_id}"
    else:
        item["expire_at"] = epoch(r.created_at) + SETTLED_RESERVATION_TTL
    return item


def reservation_from_item(item: Item) -> Reservation:
    rid, org_id = str(item["reservation_id"]), str(item["org_id"])
    body = json.loads(item["body"])
    counted = tuple(
        CountedUsage(str(c["key"]), c["metric"], int(c["amount"]), parse_iso(c["window_end"]))
        for c in body.get("counted") or []
    )
    return Reservation(
        reservation_id=rid,
        org_id=org_id,
        user=str(body["user"]),
        feature=str(body["feature"]),
        status=ReservationStatus(item["status"]),
        held_credits=int(body["held_credits"]),
        estimate=_charge_from(body["estimate"]),
        draws=_draws_from(body.get("draws")),
        counted=counted,
        balance_after=int(body["balance_after"]),
        created_at=parse_iso(item["created_at"]),
        settlement=_settlement_from(rid, org_id, body["settlement"]) if body.get("settlement") else None,
        release=_release_from(rid, org_id, body["release"]) if body.get("release") else None,
        pricing_rule=dict(body.get("pricing_rule") or {}),
        parts=tuple(_part_from(rid, org_id, raw, counted) for raw in body.get("parts") or []),
        version=int(item.get("version", 0)),
    )


def purchase_to_item(p: Purchase) -> Item:
    return {
        **purchase_key(p.org_id, p.purchase_id),
        "type": "purchase",
        "purchase_id": p.purchase_id,
        "org_id": p.org_id,
        "package": p.package,
        "credits": p.credits,
        "bonus_credits": p.bonus_credits,
        "price_micro_usd": p.price_micro_usd,
        "status": p.status.value,
        "created_at": _time(p.created_at),
        "updated_at": _time(p.updated_at),
        "created_by": p.created_by,
        "lot_ids": list(p.lot_ids),
        "refunded_credits": p.refunded_credits,
        "external_reference": p.external_reference,
        "gsi1pk": f"PURCHASES#{p.org_id}",
        "gsi1sk": f"{_time(p.created_at)}#{p.purchase_id}",
    }


def purchase_from_item(item: Item) -> Purchase:
    return Purchase(
        purchase_id=str(item["purchase_id"]),
        org_id=str(item["org_id"]),
        package=str(item["package"]),
        credits=int(item["credits"]),
        bonus_credits=int(item["bonus_credits"]),
        price_micro_usd=int(item["price_micro_usd"]),
        status=PurchaseStatus(item["status"]),
        created_at=parse_iso(item["created_at"]),
        updated_at=parse_iso(item["updated_at"]),
        created_by=item.get("created_by"),
        lot_ids=tuple(item.get("lot_ids") or ()),
        refunded_credits=int(item.get("refunded_credits", 0)),
        external_reference=item.get("external_reference"),
    )


def entry_to_item(e: LedgerEntry) -> Item:
    return {
        **entry_key(e.org_id, e.sequence),
        "type": "entry",
        "org_id": e.org_id,
        "seq": e.sequence,
        "kind": e.kind.value,
        "amount": e.amount,
        "balance_after": e.balance_after,
        "lots": json.dumps(_draws(e.lots), separators=(",", ":")),
        "reference": e.reference,
        "at": _time(e.at),
        "note": e.note,
        "details": json.dumps(dict(e.details), sort_keys=True, separators=(",", ":")),
    }


def entry_from_item(item: Item) -> LedgerEntry:
    return LedgerEntry(
        org_id=str(item["org_id"]),
        sequence=int(item["seq"]),
        kind=EntryKind(item["kind"]),
        amount=int(item["amount"]),
        balance_after=int(item["balance_after"]),
        lots=_draws_from(json.loads(item.get("lots") or "[]")),
        reference=item.get("reference"),
        at=parse_iso(item["at"]),
        note=item.get("note"),
        details=dict(json.loads(item.get("details") or "{}")),
    )


def alert_to_item(a: Alert) -> Item:
    item: Item = {
        **alert_key(a.org_id, a.alert_id),
        "type": "alert",
        "alert_id": a.alert_id,
        "org_id": a.org_id,
        "kind": a.kind.value,
        "threshold": a.threshold,
        "threshold_percent": a.threshold_percent,
        "balance": a.balance,
        "topup_reference": a.topup_reference,
        "at": _time(a.at),
        "published": a.published,
        "seq": a.sequence,
    }
    if not a.published:
        item["gsi1pk"] = UNPUBLISHED
        item["gsi1sk"] = f"{_time(a.at)}#{a.org_id}#{a.alert_id}"
    return item


def alert_from_item(item: Item) -> Alert:
    percent = item.get("threshold_percent")
    return Alert(
        alert_id=str(item["alert_id"]),
        org_id=str(item["org_id"]),
        kind=AlertKind(item["kind"]),
        threshold=int(item["threshold"]),
        threshold_percent=int(percent) if percent is not None else None,
        balance=int(item["balance"]),
        topup_reference=item.get("topup_reference"),
        at=parse_iso(item["at"]),
        published=bool(item.get("published")),
        sequence=int(item["seq"]),
    )


def _overrides_from(text: Any) -> tuple[LimitSpec, ...]:
    if not text:
        return ()
    return tuple(LimitSpec.model_validate(raw) for raw in json.loads(text))


# -- the store ------------------------------------------------------------------------------------


class DynamoMeteringStore:
    """``MeteringStore`` over one DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    # reads

    def _batch_get(self, keys: Sequence[Item]) -> dict[tuple[str, str], Item]:
        """Strongly consistent reads of up to any number of keys (100 per call)."""
        return batch_get_all(self._table, keys)

    def load(
        self,
        org_id: str,
        *,
        reservation_id: str | None = None,
        purchase_id: str | None = None,
        operation_id: str | None = None,
    ) -> MeteringSnapshot:
        keys = [account_key(org_id), org_key(org_id)]
        if reservation_id is not None:
            keys.append(reservation_key(org_id, reservation_id))
        if purchase_id is not None:
            keys.append(purchase_key(org_id, purchase_id))
        if operation_id is not None:
            keys.append(operation_key(org_id, operation_id))
        found = self._batch_get(keys)
        account_item = found.get(_k(account_key(org_id)))
        org_item = found.get(_k(org_key(org_id)))
        profile = OrgProfile(
            plan=org_item.get("plan") if org_item else None,
            billing_anchor_day=int(org_item.get("billing_anchor_day", 1)) if org_item else 1,
            limit_overrides=_overrides_from(org_item.get("limit_overrides") if org_item else None),
            exists=org_item is not None,
        )
        reservation = purchase = operation = None
        if reservation_id is not None and (item := found.get(_k(reservation_key(org_id, reservation_id)))):
            reservation = reservation_from_item(item)
        if purchase_id is not None and (item := found.get(_k(purchase_key(org_id, purchase_id)))):
            purchase = purchase_from_item(item)
        if operation_id is not None and (item := found.get(_k(operation_key(org_id, operation_id)))):
            operation = dict(item.get("result") or {})
        return MeteringSnapshot(
            account=account_from_item(org_id, account_item),
            profile=profile,
            reservation=reservation,
            purchase=purchase,
            operation=operation,
        )

    def counters(self, org_id: str, keys: Sequence[str]) -> dict[str, int]:
        found = self._batch_get([counter_key(org_id, key) for key in dict.fromkeys(keys)])
        return {str(item["sk"]): int(item.get("used", 0)) for item in found.values()}

    def entries(self, org_id: str, before_sequence: int | None, limit: int) -> list[LedgerEntry]:
        if before_sequence is None:
            condition, values = "pk = :pk AND begins_with(sk, :prefix)", {":prefix": "ENTRY#"}
        else:
            condition = "pk = :pk AND sk BETWEEN :low AND :high"
            values = {":low": "ENTRY#", ":high": f"ENTRY#{max(before_sequence - 1, 0):012d}"}
        items, _ = self._table.query(
            condition,
            values={":pk": f"LEDGER#{org_id}", **values},
            forward=False,
            limit=limit,
            consistent=True,
        )
        return [
            entry_from_item(item)
            for item in items
            if before_sequence is None or item["seq"] < before_sequence
        ]

    def all_entries(self, org_id: str) -> list[LedgerEntry]:
        """Every entry, oldest first (tests and audits)."""
        items = self._table.query_all(
            "pk = :pk AND begins_with(sk, :prefix)",
            values={":pk": f"LEDGER#{org_id}", ":prefix": "ENTRY#"},
            consistent=True,
        )
        return [entry_from_item(item) for item in items]

    def held_reservations(self, org_id: str, created_before: datetime) -> list[str]:
        items = self._table.query_all(
            "gsi1pk = :pk AND gsi1sk < :before",
            values={":pk": f"HELD#{org_id}", ":before": _time(created_before)},
            index=GSI1,
        )
        return [str(item["reservation_id"]) for item in items if item.get("status") == "held"]

    def purchases(self, org_id: str, before: str | None, limit: int) -> tuple[list[Purchase], str | None]:
        if before is None:
            condition, values = "gsi1pk = :pk", {":pk": f"PURCHASES#{org_id}"}
        else:
            condition, values = (
                "gsi1pk = :pk AND gsi1sk < :before",
                {":pk": f"PURCHASES#{org_id}", ":before": before},
            )
        items, last = self._table.query(condition, values=values, index=GSI1, forward=False, limit=limit)
        return [purchase_from_item(item) for item in items], (str(last["gsi1sk"]) if last else None)

    def alerts(self, org_id: str, limit: int) -> list[Alert]:
        items, _ = self._table.query(
            "pk = :pk AND begins_with(sk, :prefix)",
            values={":pk": f"ALERTS#{org_id}", ":prefix": "ALERT#"},
            forward=False,
            limit=limit,
            consistent=True,
        )
        return sorted(
            (alert_from_item(i) for i in items), key=lambda a: (a.sequence, a.alert_id), reverse=True
        )

    def unpublished_alerts(self, limit: int) -> list[Alert]:
        items, _ = self._table.query("gsi1pk = :pk", values={":pk": UNPUBLISHED}, index=GSI1, limit=limit)
        return [alert_from_item(item) for item in items]

    def mark_alert_published(self, org_id: str, alert_id: str) -> None:
        key = alert_key(org_id, alert_id)
        try:
            self._table.update(
                key["pk"],
                key["sk"],
                "SET published = :yes REMOVE gsi1pk, gsi1sk",
                condition="attribute_exists(pk)",
                values={":yes": True},
            )
        except ConditionFailed:
            raise NotFound(f"No alert {alert_id!r}") from None

    def save_limit_overrides(self, org_id: str, overrides: Sequence[LimitSpec]) -> None:
        text = json.dumps([spec.model_dump(mode="json") for spec in overrides], sort_keys=True)
        key = org_key(org_id)
        try:
            self._table.update(
                key["pk"],
                key["sk"],
                "SET limit_overrides = :overrides",
                condition="attribute_exists(pk)",
                values={":overrides": text},
            )
        except ConditionFailed:
            raise NotFound(f"No organization {org_id!r}") from None

    # the write

    def commit(self, commit: MeteringCommit) -> None:
        writes: list[Write] = []
        roles: list[tuple[str, str]] = []

        def add(role: str, write: Write, ref: str = "") -> None:
            writes.append(write)
            roles.append((role, ref))

        org_id = commit.org_id
        if commit.new_reservation is not None:
            add(
                "new_reservation",
                put(reservation_to_item(commit.new_reservation), "attribute_not_exists(pk)"),
            )
        if commit.reservation is not None:
            condition = "#status = :expected"
            names = {"#status": "status"}
            values: dict[str, Any] = {":expected": commit.reservation.expected.value}
            if commit.reservation.expected_version is not None:
                condition += " AND #version = :version"
                names["#version"] = "version"
                values[":version"] = commit.reservation.expected_version
            add(
                "reservation",
                put(reservation_to_item(commit.reservation.after), condition, names=names, values=values),
            )
        if commit.new_purchase is not None:
            add("new_purchase", put(purchase_to_item(commit.new_purchase), "attribute_not_exists(pk)"))
        if commit.purchase is not None:
            add(
                "purchase",
                put(
                    purchase_to_item(commit.purchase.after),
                    "#status = :expected",
                    names={"#status": "status"},
                    values={":expected": commit.purchase.expected.value},
                ),
            )
        if commit.operation is not None:
            add(
                "operation",
                put(
                    {
                        **operation_key(org_id, commit.operation.operation_id),
                        "type": "operation",
                        "result": dict(commit.operation.result),
                    },
                    "attribute_not_exists(pk)",
                ),
            )
        for change in commit.counters:
            add("counter", _counter_write(org_id, change), change.key)
        if commit.account is not None:
            add("account", _account_write(org_id, commit.account))
        for entry in commit.entries:
            add("entry", put(entry_to_item(entry), "attribute_not_exists(pk)"))
        for alert in commit.alerts:
            add("alert", put(alert_to_item(alert), "attribute_not_exists(pk)"))
        for staged in commit.staged:
            if not isinstance(staged, DynamoStagedWrites):
                raise TypeError(f"cannot commit {type(staged).__name__} in a DynamoDB transaction")
            for write in staged.writes:
                add("staged", write)
        if not writes:
            return
        try:
            self._table.transact(writes)
        except TransactionCancelled as cancelled:
            raise _why(cancelled, roles) from None
        for staged in commit.staged:
            if isinstance(staged, DynamoStagedWrites):
                staged.committed()


def _k(key: Mapping[str, Any]) -> tuple[str, str]:
    return (str(key["pk"]), str(key["sk"]))


def _counter_write(org_id: str, change: CounterChange) -> Write:
    values: dict[str, Any] = {":n": change.amount, ":ttl": epoch(change.expires_at), ":type": "counter"}
    if change.bound is None:
        return update(
            counter_key(org_id, change.key),
            "SET expire_at = :ttl, #type = :type ADD used :n",
            names={"#type": "type"},
            values=values,
        )
    # ADD and the bound in one conditional write: never read-then-write.
    values[":room"] = change.bound - change.amount
    return update(
        counter_key(org_id, change.key),
        "SET expire_at = :ttl, #type = :type ADD used :n",
        condition="attribute_not_exists(used) OR used <= :room",
        names={"#type": "type"},
        values=values,
    )


def account_to_item(org_id: str, account: CreditAccount) -> Item:
    return {
        **account_key(org_id),
        "type": "account",
        "org_id": org_id,
        "seq": account.sequence,
        "balance": account.balance,
        "held": account.held,
        "lots": {lot.lot_id: _lot_to_map(lot) for lot in account.lots},
        "last_topup": account.last_topup,
        "topup_seq": account.topup_sequence,
        "alerts_fired": sorted(account.alerts_fired),
    }


def _account_write(org_id: str, change: AccountChange) -> Write:
    """The whole account item, written only over the state it was computed from."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    if change.before.exists:
        conditions = ["#seq = :expected"]
        names["#seq"] = "seq"
        values[":expected"] = change.before.sequence
    else:
        conditions = ["attribute_not_exists(pk)"]
    for index, (lot_id, taken) in enumerate(sorted(change.lot_guards.items())):
        # No lot below zero: the stored lot must still hold what this move takes from it.
        names[f"#g{index}"] = lot_id
        values[f":g{index}"] = taken
        conditions.append(f"lots.#g{index}.remaining >= :g{index}")
    return put(account_to_item(org_id, change.after), " AND ".join(conditions), names=names, values=values)


def _why(cancelled: TransactionCancelled, roles: Sequence[tuple[str, str]]) -> Exception:
    """Turn a cancelled transaction into the reason the service acts on."""
    failed = [
        (role, ref, cancelled.items[i] if i < len(cancelled.items) else None)
        for i, (role, ref) in enumerate(roles)
        if i < len(cancelled.reasons) and cancelled.reasons[i] == "ConditionalCheckFailed"
    ]
    for role, _, item in failed:
        if role == "new_reservation" and item is not None:
            return ReservationExists(reservation_from_item(item))
        if role == "new_purchase" and item is not None:
            return PurchaseExists(purchase_from_item(item))
        if role == "operation" and item is not None:
            return OperationDone(dict(item.get("result") or {}))
    if any(role == "staged" for role, _, _ in failed):
        # Another store's write refused its own condition: nothing was written, and retrying
        # would not change it. A bug of the caller, never a client error.
        return StagedWriteRefused(str(cancelled.reasons))
    limits = {ref: int(item.get("used", 0)) if item else 0 for role, ref, item in failed if role == "counter"}
    if limits:
        return LimitReached(limits)
    # The account's sequence moved, a transition was taken by another writer, or DynamoDB saw a
    # conflicting transaction: read again and recompute.
    return CommitRaced(str(cancelled.reasons))


def _batch_get_chunk(table: DynamoTable, keys: list[Item]) -> list[Item]:
    pending: dict[str, Any] = {table.name: {"Keys": [serialize(k) for k in keys], "ConsistentRead": True}}
    found: list[Item] = []
    for attempt in range(10):
        if attempt:
            time.sleep(min(0.5, 0.01 * 2**attempt))  # DynamoDB left keys unprocessed: back off
        try:
            raw = table.client.batch_get_item(RequestItems=pending)
        except ClientError as exc:
            raise_if_unavailable(exc)
            raise
        found.extend(deserialize(item) for item in raw.get("Responses", {}).get(table.name, []))
        pending = raw.get("UnprocessedKeys") or {}
        if not pending:
            return found
    raise ServiceUnavailable("DynamoDB left keys unprocessed; retry shortly", headers={"Retry-After": "1"})


def batch_get_all(table: DynamoTable, keys: Sequence[Item]) -> dict[tuple[str, str], Item]:
    """Strongly consistent reads of any number of keys (``BatchGetItem``, 100 keys a call,
    unprocessed keys retried), by (pk, sk)."""
    found: dict[tuple[str, str], Item] = {}
    for start in range(0, len(keys), _BATCH_LIMIT):
        for item in _batch_get_chunk(table, list(keys[start : start + _BATCH_LIMIT])):
            found[_k(item)] = item
    return found
