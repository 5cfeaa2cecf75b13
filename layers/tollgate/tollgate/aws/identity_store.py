"""Orgs and API keys in the Tollgate table.

Items (see docs/architecture.md):
- org:  pk=ORG#<org_id>  sk=ORG   gsi1pk=ORGS  gsi1sk=<org_id>
- key:  pk=KEY#<key_id>  sk=KEY   gsi1pk=ORGKEYS#<org_id>  gsi1sk=<created>#<key_id>
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from tollgate.aws.dynamodb import ConditionFailed, DynamoTable, TransactionCancelled, put, update
from tollgate.clock import iso, parse_iso
from tollgate.errors import Conflict, NotFound
from tollgate.identity.models import KeyRecord, Org, Role
from tollgate.identity.ports import AdminKey

GSI1 = "gsi1"


def _maybe_time(value: Any) -> datetime | None:
    return parse_iso(value) if value else None


def org_to_item(org: Org) -> dict[str, Any]:
    return {
        "pk": f"ORG#{org.org_id}",
        "sk": "ORG",
        "type": "org",
        "org_id": org.org_id,
        "name": org.name,
        "plan": org.plan,
        "created_at": iso(org.created_at),
        "billing_anchor_day": org.billing_anchor_day,
        "settings": json.dumps(org.settings, sort_keys=True),
        "limit_overrides": json.dumps([dict(spec) for spec in org.limit_overrides], sort_keys=True),
        # Every org on one index partition, so scheduled work can list them without a scan.
        "gsi1pk": "ORGS",
        "gsi1sk": org.org_id,
    }


def org_from_item(item: dict[str, Any]) -> Org:
    return Org(
        org_id=item["org_id"],
        name=item["name"],
        plan=item["plan"],
        created_at=parse_iso(item["created_at"]),
        billing_anchor_day=int(item.get("billing_anchor_day", 1)),
        settings=json.loads(item.get("settings") or "{}"),
        limit_overrides=tuple(json.loads(item.get("limit_overrides") or "[]")),
    )


def key_to_item(record: KeyRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": f"KEY#{record.key_id}",
        "sk": "KEY",
        "type": "key",
        "key_id": record.key_id,
        "org_id": record.org_id,
        "user": record.user,
        "name": record.name,
        "role": record.role.value,
        "key_hash": record.key_hash,
        "hint": record.hint,
        "created_at": iso(record.created_at),
        "key_expires_at": iso(record.expires_at) if record.expires_at else None,
        "revoked_at": iso(record.revoked_at) if record.revoked_at else None,
        "last_used_at": iso(record.last_used_at) if record.last_used_at else None,
        "rotated_to": record.rotated_to,
    }
    if record.org_id:
        item["gsi1pk"] = f"ORGKEYS#{record.org_id}"
        item["gsi1sk"] = f"{iso(record.created_at)}#{record.key_id}"
    return item


def key_from_item(item: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        key_id=item["key_id"],
        org_id=item.get("org_id"),
        user=item["user"],
        name=item["name"],
        role=Role(item["role"]),
        key_hash=item["key_hash"],
        hint=item["hint"],
        created_at=parse_iso(item["created_at"]),
        expires_at=_maybe_time(item.get("key_expires_at")),
        revoked_at=_maybe_time(item.get("revoked_at")),
        last_used_at=_maybe_time(item.get("last_used_at")),
        rotated_to=item.get("rotated_to"),
    )


class DynamoIdentityStore:
    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def put_org(self, org: Org) -> None:
        try:
            self._table.put(org_to_item(org), condition="attribute_not_exists(pk)")
        except ConditionFailed:
            raise Conflict(f"Organization {org.org_id} already exists") from None

    def get_org(self, org_id: str) -> Org | None:
        item = self._table.get(f"ORG#{org_id}", "ORG")
        return org_from_item(item) if item else None

    def update_org(self, org: Org) -> None:
        item = org_to_item(org)
        try:
            self._table.update(
                item["pk"],
                item["sk"],
                "SET #name = :name, #plan = :plan, settings = :settings, limit_overrides = :overrides",
                condition="attribute_exists(pk)",
                names={"#name": "name", "#plan": "plan"},
                values={
                    ":name": item["name"],
                    ":plan": item["plan"],
                    ":settings": item["settings"],
                    ":overrides": item["limit_overrides"],
                },
            )
        except ConditionFailed:
            raise NotFound(f"No organization {org.org_id!r}") from None

    def put_key(self, record: KeyRecord) -> None:
        try:
            self._table.put(key_to_item(record), condition="attribute_not_exists(pk)")
        except ConditionFailed:
            raise Conflict(f"API key {record.key_id} already exists") from None

    def get_key(self, key_id: str) -> KeyRecord | None:
        item = self._table.get(f"KEY#{key_id}", "KEY")
        return key_from_item(item) if item else None

    def list_keys(self, org_id: str) -> list[KeyRecord]:
        items = self._table.query_all("gsi1pk = :pk", values={":pk": f"ORGKEYS#{org_id}"}, index=GSI1)
        return [key_from_item(i) for i in items]

    def list_org_ids(self) -> Iterator[str]:
        """Every org id, in id order, a page at a time (every org item is on ``gsi1`` ``ORGS``)."""
        start = None
        while True:
            items, start = self._table.query(
                "gsi1pk = :orgs", values={":orgs": "ORGS"}, index=GSI1, start_key=start
            )
            for item in items:
                yield str(item["org_id"])
            if start is None:
                return

    def revoke_key(self, key_id: str, at: datetime) -> KeyRecord:
        try:
            item = self._table.update(
                f"KEY#{key_id}",
                "KEY",
                "SET revoked_at = :at",
                condition="attribute_exists(pk) AND attribute_not_exists(revoked_at)",
                values={":at": iso(at)},
            )
        except ConditionFailed as exc:
            if exc.item is None:
                raise NotFound(f"No API key {key_id!r}") from None
            raise Conflict(f"API key {key_id} is already revoked") from None
        return key_from_item(item)

    def rotate_key(self, old_key_id: str, new: KeyRecord, old_expires_at: datetime) -> None:
        try:
            self._table.transact(
                [
                    put(key_to_item(new), condition="attribute_not_exists(pk)"),
                    update(
                        {"pk": f"KEY#{old_key_id}", "sk": "KEY"},
                        "SET key_expires_at = :exp, rotated_to = :new",
                        condition="attribute_exists(pk) AND attribute_not_exists(revoked_at) "
                        "AND attribute_not_exists(rotated_to)",
                        values={":exp": iso(old_expires_at), ":new": new.key_id},
                    ),
                ]
            )
        except TransactionCancelled:
            raise Conflict(f"API key {old_key_id} was revoked or rotated meanwhile") from None

    def touch_key(self, key_id: str, at: datetime, stale_before: datetime) -> None:
        # A failed condition means another request recorded a use within the resolution window.
        with contextlib.suppress(ConditionFailed):
            self._table.update(
                f"KEY#{key_id}",
                "KEY",
                "SET last_used_at = :at",
                condition="attribute_exists(pk) AND "
                "(attribute_not_exists(last_used_at) OR last_used_at < :stale)",
                values={":at": iso(at), ":stale": iso(stale_before)},
            )


def admin_key_from_json(text: str | None) -> AdminKey | None:
    """The bootstrap admin key record from its SSM parameter; unset or blank means none."""
    if not text or not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data.get("key_id") or not data.get("key_hash"):
        return None
    return AdminKey(
        key_id=str(data["key_id"]), key_hash=str(data["key_hash"]), user=str(data.get("user", "admin"))
    )


def admin_key_to_json(admin: AdminKey) -> str:
    return json.dumps({"key_id": admin.key_id, "key_hash": admin.key_hash, "user": admin.user})
