"""The usage log and its aggregates in the Tollgate table: the adapters behind
``tollgate.usage.log.UsageLog`` (and ``UsageLogPages``) and
``tollgate.usage.aggregates.UsageAggregates``.

Items (see ``docs/usage.md``):

- log entry: ``pk = ORG#<org>#LOG#<yyyy-mm-dd>``, ``sk = <at, ms>#<request id>``, with
  ``expire_at`` (the retention). One query reads an org's day in time order.
- day aggregate: ``pk = ORG#<org>#AGG#<dimension>`` (org-wide) or
  ``ORG#<org>#UAGG#<dimension>#<user>`` (one user's own), ``sk = D#<yyyy-mm-dd>#<value>``;
  integer sums added with ``ADD`` by every request, never read first. One query per dimension
  reads any range of days (``sk BETWEEN``).
- month aggregate: the same ``pk``, ``sk = M#<yyyy-mm>#<value>``, written by the scheduler's
  rollup; ``pk = ORG#<org>#AGG#ROLLUP``, ``sk = M#<yyyy-mm>`` marks a month complete.

Free text (users, values) is always last in a key, so it cannot collide with the fixed parts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tollgate.aws.dynamodb import DynamoStagedWrites, DynamoTable, Item, TransactionCancelled, Write
from tollgate.clock import parse_iso
from tollgate.errors import InvalidRequest
from tollgate.usage.aggregates import AggregateKey, AggregateRow, Dimension, Month, RollupMark, aggregate_keys
from tollgate.usage.figures import UsageFigures, figures_of
from tollgate.usage.log import LogDayPage, LogFilter, PositionedEntry, UsageLogEntry, UsageStatus

DEFAULT_LOG_RETENTION = timedelta(days=90)
AGGREGATE_TYPE = "usage_aggregate"
ROLLUP_TYPE = "usage_rollup"
CONFLICT_ATTEMPTS = 8
"""A standalone log write (a refused request) shares the day's aggregate items with every
other request of the org: a transaction conflict is retried, with jittered backoff."""
FILTERED_PAGE_EVALUATIONS = 200
"""Items a filtered log query evaluates per read (DynamoDB filters after ``Limit``)."""


def stamp(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds: sorts as text in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def log_pk(org_id: str, day: str) -> str:
    return f"ORG#{org_id}#LOG#{day}"


def aggregate_pk(org_id: str, user: str | None, dimension: Dimension) -> str:
    if user is None:
        return f"ORG#{org_id}#AGG#{dimension.value}"
    return f"ORG#{org_id}#UAGG#{dimension.value}#{user}"


def rollup_pk(org_id: str) -> str:
    return f"ORG#{org_id}#AGG#ROLLUP"


def log_item(entry: UsageLogEntry, retention: timedelta) -> Item:
    item: Item = {
        "pk": log_pk(entry.org_id, entry.at.astimezone(UTC).strftime("%Y-%m-%d")),
        "sk": f"{stamp(entry.at)}#{entry.request_id}",
        "type": "usage_log",
        "request_id": entry.request_id,
        "org_id": entry.org_id,
        "user": entry.user,
        "key_id": entry.key_id,
        "model": entry.model,
        "provider": entry.provider,
        "feature": entry.feature,
        "kind": entry.kind,
        "input_tokens": entry.input_tokens,
        "output_tokens": entry.output_tokens,
        "cost_micro_usd": entry.cost_micro_usd,
        "credits": entry.credits,
        "latency_ms": entry.latency_ms,
        "cache_hit": entry.cache_hit,
        "status": entry.status.value,
        "at": stamp(entry.at),
        "expire_at": int((entry.at + retention).timestamp()),
    }
    if entry.error_class:
        item["error_class"] = entry.error_class
    if entry.error_code:
        item["error_code"] = entry.error_code
    if entry.template_id:
        item["template_id"] = entry.template_id
        item["template_version"] = entry.template_version
    return item


def log_entry_of(item: Item) -> UsageLogEntry:
    version = item.get("template_version")
    return UsageLogEntry(
        request_id=str(item["request_id"]),
        org_id=str(item["org_id"]),
        user=str(item["user"]),
        key_id=str(item.get("key_id", "")),
        model=str(item["model"]),
        provider=str(item["provider"]),
        feature=str(item["feature"]),
        kind=str(item.get("kind", "")),
        input_tokens=int(item.get("input_tokens", 0)),
        output_tokens=int(item.get("output_tokens", 0)),
        cost_micro_usd=int(item.get("cost_micro_usd", 0)),
        credits=int(item.get("credits", 0)),
        latency_ms=int(item.get("latency_ms", 0)),
        cache_hit=bool(item.get("cache_hit", False)),
        status=UsageStatus(str(item["status"])),
        error_class=item.get("error_class"),
        at=parse_iso(str(item["at"])),
        template_id=item.get("template_id"),
        template_version=int(version) if version is not None else None,
        error_code=item.get("error_code"),
    )


# -- aggregates --------------------------------------------------------------------------------


def _aggregate_attributes(
    org_id: str, key: AggregateKey, period: str, provider: str | None
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "type": AGGREGATE_TYPE,
        "org_id": org_id,
        "dimension": key.dimension.value,
        "period": period,
        "value": key.value,
    }
    if key.user is not None:
        attributes["user"] = key.user
    if provider is not None and key.dimension is Dimension.MODEL:
        attributes["provider"] = provider
    return attributes


def aggregate_write(org_id: str, key: AggregateKey, day: str, figures: UsageFigures, provider: str) -> Write:
    """``ADD`` a request's figures to one day aggregate: no condition, no read, so it can ride
    in any transaction and never refuses; the transaction around it makes it happen once."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets = []
    for index, (name, value) in enumerate(_aggregate_attributes(org_id, key, day, provider).items()):
        names[f"#s{index}"] = name
        values[f":s{index}"] = value
        sets.append(f"#s{index} = :s{index}")
    adds = []
    for index, (name, amount) in enumerate(
        (name, amount) for name, amount in figures.to_counters().items() if amount
    ):
        names[f"#a{index}"] = name
        values[f":a{index}"] = amount
        adds.append(f"#a{index} :a{index}")
    expression = "SET " + ", ".join(sets) + (" ADD " + ", ".join(adds) if adds else "")
    return Write(
        "Update",
        key={"pk": aggregate_pk(org_id, key.user, key.dimension), "sk": f"D#{day}#{key.value}"},
        update=expression,
        names=names,
        values=values,
    )


def aggregate_writes(entry: UsageLogEntry) -> tuple[Write, ...]:
    day = entry.at.astimezone(UTC).strftime("%Y-%m-%d")
    figures = figures_of(entry)
    return tuple(
        aggregate_write(entry.org_id, key, day, figures, entry.provider) for key in aggregate_keys(entry)
    )


def _row_of(item: Item) -> AggregateRow:
    provider = item.get("provider")
    return AggregateRow(
        period=str(item["period"]),
        value=str(item["value"]),
        figures=UsageFigures.from_counters(item),
        provider=str(provider) if provider is not None else None,
    )


class DynamoUsageAggregates:
    """``UsageAggregates`` over the Tollgate table."""

    def __init__(self, table: DynamoTable, *, consistent: bool = False) -> None:
        self._table = table
        self._consistent = consistent

    def _between(self, pk: str, low: str, high: str, consistent: bool) -> list[AggregateRow]:
        items = self._table.query_all(
            "pk = :pk AND sk BETWEEN :low AND :high",
            values={":pk": pk, ":low": low, ":high": high},
            consistent=consistent,
        )
        return [_row_of(item) for item in items]

    def daily(
        self, org_id: str, user: str | None, dimension: Dimension, start: date, end: date
    ) -> Sequence[AggregateRow]:
        # "$" sorts right after "#": the high bound covers every value of the last day.
        return self._between(
            aggregate_pk(org_id, user, dimension),
            f"D#{start.isoformat()}#",
            f"D#{end.isoformat()}$",
            self._consistent,
        )

    def monthly(
        self, org_id: str, user: str | None, dimension: Dimension, first: Month, last: Month
    ) -> Sequence[AggregateRow]:
        return self._between(
            aggregate_pk(org_id, user, dimension), f"M#{first}#", f"M#{last}$", self._consistent
        )

    def rollup_marks(self, org_id: str) -> Sequence[RollupMark]:
        items = self._table.query_all("pk = :pk", values={":pk": rollup_pk(org_id)}, consistent=True)
        return [
            RollupMark(
                month=Month.parse(str(item["month"])),
                requests=int(item.get("requests", 0)),
                rows=int(item.get("rows", 0)),
                at=parse_iso(str(item["at"])),
            )
            for item in items
        ]

    def put_monthly(
        self, org_id: str, user: str | None, dimension: Dimension, rows: Sequence[AggregateRow]
    ) -> None:
        for row in rows:
            key = AggregateKey(dimension, row.value, user)
            self._table.put(
                {
                    "pk": aggregate_pk(org_id, user, dimension),
                    "sk": f"M#{row.period}#{row.value}",
                    **_aggregate_attributes(org_id, key, row.period, row.provider),
                    **row.figures.to_counters(),
                }
            )

    def mark_rolled_up(self, org_id: str, mark: RollupMark) -> None:
        self._table.put(
            {
                "pk": rollup_pk(org_id),
                "sk": f"M#{mark.month}",
                "type": ROLLUP_TYPE,
                "org_id": org_id,
                "month": str(mark.month),
                "requests": mark.requests,
                "rows": mark.rows,
                "at": stamp(mark.at),
            }
        )


# -- the log ---------------------------------------------------------------------------------------


class DynamoUsageLog:
    """``UsageLog`` (and ``UsageLogPages``) over the Tollgate table. Recording an entry also
    adds it to its day's aggregates, in the same transaction; ``on_logged`` (the request
    metrics) runs once that transaction committed."""

    def __init__(
        self,
        table: DynamoTable,
        retention: timedelta = DEFAULT_LOG_RETENTION,
        on_logged: Callable[[UsageLogEntry], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table = table
        self._retention = retention
        self._on_logged = on_logged
        self._sleep = sleep

    def _callbacks(self, entry: UsageLogEntry) -> tuple[Callable[[], None], ...]:
        on_logged = self._on_logged
        return () if on_logged is None else (lambda: on_logged(entry),)

    def stage(self, entry: UsageLogEntry) -> DynamoStagedWrites:
        """The entry and its aggregates, all unconditional: for a transaction that happens once
        (a settlement or release: its reservation's own condition makes it so)."""
        return DynamoStagedWrites(
            (Write("Put", item=log_item(entry, self._retention)), *aggregate_writes(entry)),
            self._callbacks(entry),
        )

    def stage_once(self, entry: UsageLogEntry) -> DynamoStagedWrites:
        """As ``stage``, but the entry is written only if absent: a second write of the same
        entry cancels its transaction, so its aggregates are never added twice. For writes of
        their own (``commit_once``), never inside a metering step."""
        return DynamoStagedWrites(
            (
                Write("Put", item=log_item(entry, self._retention), condition="attribute_not_exists(pk)"),
                *aggregate_writes(entry),
            ),
            self._callbacks(entry),
        )

    def commit_once(self, staged: DynamoStagedWrites) -> bool:
        """Commit writes that hold a ``stage_once`` entry, on their own. ``False`` if the entry
        was recorded before (nothing is written again). Transaction conflicts (another request
        adding to the same aggregates) are retried."""
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                self._table.transact(staged.writes)
            except TransactionCancelled as cancelled:
                if "ConditionalCheckFailed" in cancelled.reasons:
                    return False
                if "TransactionConflict" not in cancelled.reasons or attempt == CONFLICT_ATTEMPTS - 1:
                    raise
                self._sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))  # noqa: S311 - jitter
                continue
            staged.committed()
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, entry: UsageLogEntry) -> None:
        """Record an entry on its own (a refused request, with nothing to settle); recording
        the same entry again changes nothing."""
        self.commit_once(self.stage_once(entry))

    def day(self, org_id: str, day: str) -> Sequence[UsageLogEntry]:
        items = self._table.query_all("pk = :pk", values={":pk": log_pk(org_id, day)})
        return [log_entry_of(item) for item in items]

    def page(self, org_id: str, day: date, filters: LogFilter, after: str | None, limit: int) -> LogDayPage:
        """Entries of one day, newest first, after the position ``after`` (an ``sk`` of that
        day; ``InvalidRequest`` otherwise), filtered."""
        text = day.isoformat()
        if after is not None and not (after.startswith(f"{text}T") and "#" in after):
            raise InvalidRequest("Invalid cursor: pass back the next_cursor of the previous page")
        conditions: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {":pk": log_pk(org_id, text)}
        for index, (name, value) in enumerate(
            (
                ("user", filters.user),
                ("model", filters.model),
                ("feature", filters.feature),
                ("status", filters.status.value if filters.status else None),
                ("cache_hit", filters.cache_hit),
            )
        ):
            if value is not None:
                names[f"#f{index}"] = name
                values[f":f{index}"] = value
                conditions.append(f"#f{index} = :f{index}")
        items, last = self._table.query(
            "pk = :pk",
            names=names or None,
            values=values,
            forward=False,
            limit=max(limit, FILTERED_PAGE_EVALUATIONS) if conditions else limit,
            start_key={"pk": log_pk(org_id, text), "sk": after} if after else None,
            filter_expression=" AND ".join(conditions) or None,
        )
        return LogDayPage(
            tuple(PositionedEntry(str(item["sk"]), log_entry_of(item)) for item in items),
            str(last["sk"]) if last else None,
        )
