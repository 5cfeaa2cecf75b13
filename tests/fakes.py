"""In-memory fakes of the domain's ports, for unit tests without AWS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from msgspec.structs import replace

from tollgate.errors import Conflict, NotFound
from tollgate.identity.models import KeyRecord, Org
from tollgate.identity.ports import AdminKey


class MemoryIdentityStore:
    def __init__(self) -> None:
        self.orgs: dict[str, Org] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.touches = 0

    def put_org(self, org: Org) -> None:
        if org.org_id in self.orgs:
            raise Conflict("exists")
        self.orgs[org.org_id] = org

    def get_org(self, org_id: str) -> Org | None:
        return self.orgs.get(org_id)

    def put_key(self, record: KeyRecord) -> None:
        if record.key_id in self.keys:
            raise Conflict("exists")
        self.keys[record.key_id] = record

    def get_key(self, key_id: str) -> KeyRecord | None:
        return self.keys.get(key_id)

    def list_keys(self, org_id: str) -> list[KeyRecord]:
        return [k for k in self.keys.values() if k.org_id == org_id]

    def list_org_ids(self) -> Iterator[str]:
        return iter(sorted(self.orgs))

    def revoke_key(self, key_id: str, at: datetime) -> KeyRecord:
        record = self.keys.get(key_id)
        if record is None:
            raise NotFound("no key")
        if record.revoked_at is not None:
            raise Conflict("revoked")
        self.keys[key_id] = replace(record, revoked_at=at)
        return self.keys[key_id]

    def rotate_key(self, old_key_id: str, new: KeyRecord, old_expires_at: datetime) -> None:
        old = self.keys[old_key_id]
        if old.revoked_at is not None or old.rotated_to is not None:
            raise Conflict("rotated")
        self.keys[new.key_id] = new
        self.keys[old_key_id] = replace(old, expires_at=old_expires_at, rotated_to=new.key_id)

    def touch_key(self, key_id: str, at: datetime, stale_before: datetime) -> None:
        record = self.keys[key_id]
        if record.last_used_at is None or record.last_used_at < stale_before:
            self.keys[key_id] = replace(record, last_used_at=at)
            self.touches += 1


class StaticSecrets:
    def __init__(self, pepper: bytes = b"unit-test-pepper-0123456789", admin: AdminKey | None = None) -> None:
        self.pepper = pepper
        self.admin = admin

    def key_pepper(self) -> bytes:
        return self.pepper

    def admin_key(self) -> AdminKey | None:
        return self.admin


# -- usage analytics (issue 7) ---------------------------------------------------------------------


def _by_period(item: tuple[tuple[Any, ...], Any]) -> tuple[str, str]:
    """Rows in key order: period, then value (the user part of the key may be None)."""
    return (item[0][3], item[0][4])


class MemoryUsageStore:
    """The usage log and its aggregates in memory: ``record`` adds an entry to its day's
    aggregates as ``DynamoUsageLog.stage`` does; implements ``UsageAggregates`` and
    ``UsageLogPages``. ``reads`` counts the rows and entries handed out."""

    def __init__(self) -> None:
        from tollgate.usage.aggregates import AggregateRow, Dimension, RollupMark
        from tollgate.usage.log import UsageLogEntry

        self.days: dict[tuple[str, str | None, Dimension, str, str], AggregateRow] = {}
        self.months: dict[tuple[str, str | None, Dimension, str, str], AggregateRow] = {}
        self.marks: dict[tuple[str, str], RollupMark] = {}
        self.entries: dict[tuple[str, str], list[tuple[str, UsageLogEntry]]] = {}
        self.reads = 0

    def record(self, entry: Any) -> None:
        from tollgate.usage.aggregates import AggregateRow, aggregate_keys, day_of
        from tollgate.usage.figures import figures_of

        day = day_of(entry.at).isoformat()
        figures = figures_of(entry)
        for key in aggregate_keys(entry):
            slot = (entry.org_id, key.user, key.dimension, day, key.value)
            row = self.days.get(slot)
            provider = entry.provider if key.dimension.value == "model" else None
            self.days[slot] = AggregateRow(
                day, key.value, figures if row is None else row.figures + figures, provider
            )
        position = f"{entry.at.isoformat()}#{entry.request_id}"
        self.entries.setdefault((entry.org_id, day), []).append((position, entry))

    def daily(self, org_id: str, user: str | None, dimension: Any, start: Any, end: Any) -> list[Any]:
        rows = [
            row
            for (org, who, dim, day, _), row in sorted(self.days.items(), key=_by_period)
            if org == org_id and who == user and dim == dimension and str(start) <= day <= str(end)
        ]
        self.reads += len(rows)
        return rows

    def monthly(self, org_id: str, user: str | None, dimension: Any, first: Any, last: Any) -> list[Any]:
        rows = [
            row
            for (org, who, dim, month, _), row in sorted(self.months.items(), key=_by_period)
            if org == org_id and who == user and dim == dimension and str(first) <= month <= str(last)
        ]
        self.reads += len(rows)
        return rows

    def rollup_marks(self, org_id: str) -> list[Any]:
        return [mark for (org, _), mark in sorted(self.marks.items()) if org == org_id]

    def put_monthly(self, org_id: str, user: str | None, dimension: Any, rows: Any) -> None:
        for row in rows:
            self.months[(org_id, user, dimension, row.period, row.value)] = row

    def mark_rolled_up(self, org_id: str, mark: Any) -> None:
        self.marks[(org_id, str(mark.month))] = mark

    def page(self, org_id: str, day: Any, filters: Any, after: str | None, limit: int) -> Any:
        from tollgate.usage.log import LogDayPage, PositionedEntry

        newest_first = sorted(self.entries.get((org_id, day.isoformat()), []), reverse=True)
        if after is not None:
            newest_first = [item for item in newest_first if item[0] < after]
        window = newest_first[:limit]
        more = window[-1][0] if len(newest_first) > limit else None

        def keep(entry: Any) -> bool:
            return all(
                wanted is None or getattr(entry, name) == wanted
                for name, wanted in (
                    ("user", filters.user),
                    ("model", filters.model),
                    ("feature", filters.feature),
                    ("status", filters.status),
                    ("cache_hit", filters.cache_hit),
                )
            )

        kept = tuple(PositionedEntry(pos, entry) for pos, entry in window if keep(entry))
        self.reads += len(window)
        return LogDayPage(kept, more)
