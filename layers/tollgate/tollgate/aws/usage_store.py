"""The usage log in the Tollgate table: the adapter behind ``tollgate.usage.log.UsageLog``.

Item (see ``docs/generation.md``): ``pk = ORG#<org>#LOG#<yyyy-mm-dd>``,
``sk = <at, ms>#<request id>``, with ``expire_at`` (the retention). One query reads an org's
day in time order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from tollgate.aws.dynamodb import DynamoStagedWrites, DynamoTable, Item, Write
from tollgate.clock import parse_iso
from tollgate.usage.log import UsageLogEntry, UsageStatus

DEFAULT_LOG_RETENTION = timedelta(days=90)


def stamp(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds: sorts as text in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def log_pk(org_id: str, day: str) -> str:
    return f"ORG#{org_id}#LOG#{day}"


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
    )


class DynamoUsageLog:
    """``UsageLog`` over the Tollgate table."""

    def __init__(self, table: DynamoTable, retention: timedelta = DEFAULT_LOG_RETENTION) -> None:
        self._table = table
        self._retention = retention

    def stage(self, entry: UsageLogEntry) -> DynamoStagedWrites:
        return DynamoStagedWrites((Write("Put", item=log_item(entry, self._retention)),))

    def write(self, entry: UsageLogEntry) -> None:
        self._table.transact(self.stage(entry).writes)

    def day(self, org_id: str, day: str) -> Sequence[UsageLogEntry]:
        items = self._table.query_all("pk = :pk", values={":pk": log_pk(org_id, day)})
        return [log_entry_of(item) for item in items]
