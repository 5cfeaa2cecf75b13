"""In-memory fakes of the domain's ports, for unit tests without AWS."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

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
