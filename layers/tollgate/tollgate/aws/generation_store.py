"""Generation records and usage log entries in the Tollgate table.

Items (see ``docs/generation.md``):

- record: ``pk = ORG#<org>#REQ#<request id>``, ``sk = REQ``; listed newest first from gsi1 with
  ``gsi1pk = ORG#<org>#REQS``, ``gsi1sk = <created at, ms>#<request id>``. No TTL.
- usage log entry: ``pk = ORG#<org>#LOG#<yyyy-mm-dd>``, ``sk = <at, ms>#<request id>``, with
  ``expire_at`` (retention). One query reads an org's day in time order.

A record and its log entry are written in one transaction (one AWS call). Structured fields
(prompt, result, params, findings, error) are stored as JSON text; numbers are integers.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from tollgate.aws.dynamodb import ConditionFailed, DynamoTable, Item, Write
from tollgate.clock import parse_iso
from tollgate.errors import InvalidRequest
from tollgate.generation.records import (
    GenerationRecord,
    Rating,
    RecordFilter,
    RecordPage,
    RequestStatus,
    UsageLogEntry,
)

RECORD_SK = "REQ"
GSI = "gsi1"
DEFAULT_LOG_RETENTION = timedelta(days=90)
_JSON_FIELDS = ("prompt", "params", "result", "error", "findings", "fallbacks")


def stamp(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds: sorts as text in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def record_pk(org_id: str, request_id: str) -> str:
    return f"ORG#{org_id}#REQ#{request_id}"


def records_gsi_pk(org_id: str) -> str:
    return f"ORG#{org_id}#REQS"


def log_pk(org_id: str, day: str) -> str:
    return f"ORG#{org_id}#LOG#{day}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _record_item(record: GenerationRecord) -> Item:
    item: Item = {
        "pk": record_pk(record.org_id, record.request_id),
        "sk": RECORD_SK,
        "gsi1pk": records_gsi_pk(record.org_id),
        "gsi1sk": f"{stamp(record.created_at)}#{record.request_id}",
        "type": "generation_request",
        "request_id": record.request_id,
        "org_id": record.org_id,
        "user": record.user,
        "key_id": record.key_id,
        "kind": record.kind,
        "requested_model": record.requested_model,
        "model": record.model,
        "provider": record.provider,
        "feature": record.feature,
        "status": record.status.value,
        "created_at": stamp(record.created_at),
        "prompt_hash": record.prompt_hash,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cost_micro_usd": record.cost_micro_usd,
        "credits_charged": record.credits_charged,
        "latency_ms": record.latency_ms,
        "overhead_ms": record.overhead_ms,
        "cached": record.cached,
    }
    for name in _JSON_FIELDS:
        value = getattr(record, name)
        if value is not None and value != ():
            item[name] = _dumps(list(value) if isinstance(value, tuple) else value)
    for name in ("template_id", "template_version", "parent_id"):
        if getattr(record, name) is not None:
            item[name] = getattr(record, name)
    if record.completed_at is not None:
        item["completed_at"] = stamp(record.completed_at)
    if record.rating is not None:
        item["rating"] = _rating_json(record.rating)
    return item


def _rating_json(rating: Rating) -> str:
    return _dumps(
        {
            "score": rating.score,
            "comment": rating.comment,
            "rated_at": stamp(rating.rated_at),
            "rated_by": rating.rated_by,
        }
    )


def _loads(item: Item, name: str) -> Any:
    raw = item.get(name)
    return json.loads(raw) if isinstance(raw, str) else None


def _record_of(item: Item) -> GenerationRecord:
    rating_raw = _loads(item, "rating")
    rating = (
        Rating(
            score=int(rating_raw["score"]),
            comment=rating_raw.get("comment"),
            rated_at=parse_iso(rating_raw["rated_at"]),
            rated_by=str(rating_raw.get("rated_by", "")),
        )
        if isinstance(rating_raw, dict)
        else None
    )
    version = item.get("template_version")
    return GenerationRecord(
        request_id=str(item["request_id"]),
        org_id=str(item["org_id"]),
        user=str(item["user"]),
        key_id=str(item.get("key_id", "")),
        kind=str(item["kind"]),
        requested_model=str(item["requested_model"]),
        model=str(item["model"]),
        provider=str(item["provider"]),
        feature=str(item["feature"]),
        status=RequestStatus(str(item["status"])),
        created_at=parse_iso(str(item["created_at"])),
        prompt_hash=str(item["prompt_hash"]),
        prompt=_loads(item, "prompt"),
        params=_loads(item, "params") or {},
        result=_loads(item, "result"),
        input_tokens=int(item.get("input_tokens", 0)),
        output_tokens=int(item.get("output_tokens", 0)),
        cost_micro_usd=int(item.get("cost_micro_usd", 0)),
        credits_charged=int(item.get("credits_charged", 0)),
        latency_ms=int(item.get("latency_ms", 0)),
        overhead_ms=int(item.get("overhead_ms", 0)),
        cached=bool(item.get("cached", False)),
        error=_loads(item, "error"),
        findings=tuple(_loads(item, "findings") or ()),
        fallbacks=tuple(_loads(item, "fallbacks") or ()),
        template_id=item.get("template_id"),
        template_version=int(version) if version is not None else None,
        parent_id=item.get("parent_id"),
        rating=rating,
        completed_at=parse_iso(str(item["completed_at"])) if item.get("completed_at") else None,
    )


def _log_item(entry: UsageLogEntry, retention: timedelta) -> Item:
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
    return item


def _log_of(item: Item) -> UsageLogEntry:
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
        status=RequestStatus(str(item["status"])),
        error_class=item.get("error_class"),
        at=parse_iso(str(item["at"])),
    )


def _encode_cursor(org_id: str, key: Item | None) -> str | None:
    if key is None:
        return None
    text = _dumps({"org": org_id, "key": key})
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(org_id: str, cursor: str) -> Item:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("Invalid cursor") from None
    if not isinstance(raw, dict) or raw.get("org") != org_id or not isinstance(raw.get("key"), dict):
        raise InvalidRequest("Invalid cursor")
    key: Item = raw["key"]
    if set(key) != {"pk", "sk", "gsi1pk", "gsi1sk"} or key.get("gsi1pk") != records_gsi_pk(org_id):
        raise InvalidRequest("Invalid cursor")
    return key


class DynamoGenerationStore:
    """``GenerationStore`` over the Tollgate table."""

    def __init__(self, table: DynamoTable, log_retention: timedelta = DEFAULT_LOG_RETENTION) -> None:
        self._table = table
        self._retention = log_retention

    def save(self, record: GenerationRecord, log: UsageLogEntry | None = None) -> None:
        writes = [Write("Put", item=_record_item(record))]
        if log is not None:
            writes.append(Write("Put", item=_log_item(log, self._retention)))
        self._table.transact(writes)

    def get(self, org_id: str, request_id: str) -> GenerationRecord | None:
        item = self._table.get(record_pk(org_id, request_id), RECORD_SK, consistent=False)
        return _record_of(item) if item else None

    def list(self, org_id: str, filters: RecordFilter, limit: int, cursor: str | None) -> RecordPage:
        conditions: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {":pk": records_gsi_pk(org_id)}
        for name, value in (
            ("user", filters.user),
            ("status", filters.status.value if filters.status else None),
            ("model", filters.model),
            ("feature", filters.feature),
        ):
            if value is not None:
                names[f"#{name}"] = name
                values[f":{name}"] = value
                conditions.append(f"#{name} = :{name}")
        items, last = self._table.query(
            "gsi1pk = :pk",
            index=GSI,
            names=names or None,
            values=values,
            forward=False,
            limit=limit,
            start_key=_decode_cursor(org_id, cursor) if cursor else None,
            filter_expression=" AND ".join(conditions) or None,
        )
        return RecordPage(tuple(_record_of(item) for item in items), _encode_cursor(org_id, last))

    def rate(self, org_id: str, request_id: str, rating: Rating) -> GenerationRecord | None:
        try:
            item = self._table.update(
                record_pk(org_id, request_id),
                RECORD_SK,
                "SET rating = :rating",
                condition="attribute_exists(pk)",
                values={":rating": _rating_json(rating)},
            )
        except ConditionFailed:
            return None
        return _record_of(item)

    def logs(self, org_id: str, day: str) -> Sequence[UsageLogEntry]:
        items = self._table.query_all("pk = :pk", values={":pk": log_pk(org_id, day)})
        return [_log_of(item) for item in items]
