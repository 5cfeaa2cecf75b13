"""Generation records and usage log entries in the Tollgate table.

Items (see ``docs/generation.md``):

- record: ``pk = ORG#<org>#REQ#<request id>``, ``sk = REQ``; listed newest first from gsi1 with
  ``gsi1pk = ORG#<org>#REQS``, ``gsi1sk = <created at, ms>#<request id>``. No TTL.

A record is written with its usage log entry (``tollgate.aws.usage_store``), both staged for
the settlement's transaction (``stage``) or on their own (``save``): one AWS call either way.
Structured fields (prompt, result, params, findings, error) are stored as JSON text; numbers are
integers. A record is kept under ``MAX_RECORD_BYTES``: DynamoDB refuses an item over 400 KB, and
a refused record would take its settlement down with it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from tollgate.aws.dynamodb import ConditionFailed, DynamoStagedWrites, DynamoTable, Item, Write
from tollgate.aws.usage_store import DynamoUsageLog, stamp
from tollgate.clock import parse_iso
from tollgate.errors import InvalidRequest
from tollgate.generation.records import (
    GenerationRecord,
    Rating,
    RecordFilter,
    RecordPage,
    RequestStatus,
)
from tollgate.usage.log import UsageLogEntry

RECORD_SK = "REQ"
GSI = "gsi1"
MAX_RECORD_BYTES = 300_000
"""What the JSON fields of a record may take together; the largest (prompt, result) give way."""
_JSON_FIELDS = ("prompt", "params", "result", "error", "findings", "fallbacks")
_SHRINKABLE = ("prompt", "result")


def record_pk(org_id: str, request_id: str) -> str:
    return f"ORG#{org_id}#REQ#{request_id}"


def records_gsi_pk(org_id: str) -> str:
    return f"ORG#{org_id}#REQS"


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
    _bound_size(item)
    for name in ("template_id", "template_version", "parent_id"):
        if getattr(record, name) is not None:
            item[name] = getattr(record, name)
    if record.completed_at is not None:
        item["completed_at"] = stamp(record.completed_at)
    if record.rating is not None:
        item["rating"] = _rating_json(record.rating)
    return item


def _bound_size(item: Item) -> None:
    """Keep the JSON fields under ``MAX_RECORD_BYTES``: the prompt (its hash stays) and then the
    result are dropped for a marker, rather than the whole write failing."""

    def size() -> int:
        return sum(len(str(item[name]).encode("utf-8")) for name in _JSON_FIELDS if name in item)

    for name in _SHRINKABLE:
        if size() <= MAX_RECORD_BYTES:
            return
        if name in item:
            item[name] = _dumps({"omitted": True, "reason": f"over {MAX_RECORD_BYTES} bytes"})


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

    def __init__(self, table: DynamoTable, usage_log: DynamoUsageLog) -> None:
        self._table = table
        self._usage_log = usage_log

    def stage(self, record: GenerationRecord, log: UsageLogEntry | None = None) -> DynamoStagedWrites:
        staged = DynamoStagedWrites((Write("Put", item=_record_item(record)),))
        return staged + self._usage_log.stage(log) if log is not None else staged

    def save(self, record: GenerationRecord, log: UsageLogEntry | None = None) -> None:
        if log is None:
            self._table.transact(self.stage(record).writes)
            return
        # On its own (a refusal, or a release that may have committed after all): the entry is
        # written once, so its aggregates are never added twice.
        record_put = DynamoStagedWrites((Write("Put", item=_record_item(record)),))
        self._usage_log.commit_once(record_put + self._usage_log.stage_once(log))

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
