"""The identity use cases: authenticate a key, manage orgs and keys, with tenancy checks.

Tenancy rule (S2, OWASP API1): a resource of another org is answered as not found, never as
forbidden, so that ids of other tenants cannot be probed. Role checks come after ownership.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from msgspec import Struct
from msgspec.structs import replace

from tollgate.clock import Clock, SystemClock
from tollgate.errors import FieldError, Forbidden, NotFound, Unauthorized, ValidationFailed
from tollgate.identity.keys import KeyHasher, MalformedKey, PlainKey, generate_key, is_valid_key_id, parse_key
from tollgate.identity.models import Caller, KeyRecord, Org, Role
from tollgate.identity.ports import AdminKey, IdentitySecrets, IdentityStore
from tollgate.ids import is_valid_id, new_id

_BEARER = re.compile(r"^Bearer\s+(\S+)\s*$", re.IGNORECASE)
MAX_ROTATION_GRACE = timedelta(days=7)
MAX_SETTINGS_BYTES = 4096


class IssuedKey(Struct, frozen=True):
    """A key just created: the record, and the plain key to show exactly once."""

    record: KeyRecord
    plain: PlainKey


def issue_admin_key(hasher: KeyHasher) -> tuple[PlainKey, AdminKey]:
    """Make a new bootstrap admin key and the record to store for it (not the key)."""
    plain = generate_key()
    return plain, AdminKey(key_id=plain.key_id, key_hash=hasher.hash(plain))


class IdentityService:
    def __init__(
        self,
        store: IdentityStore,
        secrets: IdentitySecrets,
        plan_names: frozenset[str],
        clock: Clock | None = None,
        last_used_resolution: timedelta = timedelta(hours=1),
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._plans = plan_names
        self._clock = clock or SystemClock()
        self._last_used_resolution = last_used_resolution

    def _hasher(self) -> KeyHasher:
        return KeyHasher(self._secrets.key_pepper())

    # -- authentication ------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Caller:
        """Turn an ``Authorization`` header into a caller, or raise ``Unauthorized``."""
        if not authorization:
            raise Unauthorized("Missing API key: send 'Authorization: Bearer tg_...'")
        match = _BEARER.match(authorization)
        if match is None:
            raise Unauthorized("The Authorization header must be 'Bearer <API key>'")
        try:
            key = parse_key(match.group(1))
        except MalformedKey as exc:
            raise Unauthorized(f"Malformed API key: {exc}") from None
        hasher = self._hasher()
        admin = self._secrets.admin_key()
        if admin is not None and key.key_id == admin.key_id:
            if not hasher.matches(key, admin.key_hash):
                raise Unauthorized("Unknown API key")
            return Caller(key_id=admin.key_id, user=admin.user, role=Role.ADMIN)
        record = self._store.get_key(key.key_id)
        if record is None or not hasher.matches(key, record.key_hash):
            raise Unauthorized("Unknown API key")
        now = self._clock.now()
        if record.revoked_at is not None and record.revoked_at <= now:
            raise Unauthorized("This API key has been revoked")
        if record.expires_at is not None and record.expires_at <= now:
            raise Unauthorized("This API key has expired")
        org: Org | None = None
        if record.org_id is not None:
            org = self._store.get_org(record.org_id)
            if org is None:
                raise Unauthorized("The organization of this API key no longer exists")
        if record.last_used_at is None or record.last_used_at < now - self._last_used_resolution:
            self._store.touch_key(record.key_id, now, now - self._last_used_resolution)
        return Caller(
            key_id=record.key_id,
            user=record.user,
            role=record.role,
            org_id=record.org_id,
            plan=org.plan if org else None,
            org=org.context() if org else None,
        )

    # -- organizations -------------------------------------------------------------------

    def create_org(self, caller: Caller, name: str, plan: str, billing_anchor_day: int = 1) -> Org:
        if not caller.is_admin:
            raise Forbidden("Only the platform admin can create organizations")
        self._check_plan(plan)
        org = Org(
            org_id=new_id("org"),
            name=name,
            plan=plan,
            created_at=self._clock.now(),
            billing_anchor_day=billing_anchor_day,
        )
        self._store.put_org(org)
        return org

    def get_org(self, caller: Caller, org_id: str) -> Org:
        if not is_valid_id(org_id, "org") or not caller.can_see_org(org_id):
            raise NotFound(f"No organization {org_id!r}")
        org = self._store.get_org(org_id)
        if org is None:
            raise NotFound(f"No organization {org_id!r}")
        return org

    def update_org(
        self,
        caller: Caller,
        org_id: str,
        *,
        name: str | None = None,
        plan: str | None = None,
        settings: Mapping[str, object] | None = None,
        limit_overrides: Sequence[Mapping[str, Any]] | None = None,
    ) -> Org:
        """Change what is given: the name and settings (the org's owner or the admin), the plan
        and limit overrides (the admin). ``settings`` entries replace the org's; a ``None``
        value removes one. Functions see the change within the authorizer's cache TTL: the org
        travels with the caller (``Caller.org``)."""
        org = self.get_org(caller, org_id)
        if not (caller.is_admin or caller.role is Role.OWNER):
            raise Forbidden("Only an owner of the organization or the admin can change it")
        if (plan is not None or limit_overrides is not None) and not caller.is_admin:
            raise Forbidden("Only the platform admin changes an organization's plan and limits")
        if plan is not None:
            self._check_plan(plan)
        merged = dict(org.settings)
        for key, value in (settings or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if len(json.dumps(merged, separators=(",", ":"))) > MAX_SETTINGS_BYTES:
            # They travel in every request's authorizer context, which API Gateway bounds.
            raise ValidationFailed([FieldError("settings", f"At most {MAX_SETTINGS_BYTES} bytes of JSON")])
        updated = replace(
            org,
            name=name if name is not None else org.name,
            plan=plan if plan is not None else org.plan,
            settings=merged,
            limit_overrides=tuple(limit_overrides) if limit_overrides is not None else org.limit_overrides,
        )
        self._store.update_org(updated)
        return updated

    def _check_plan(self, plan: str) -> None:
        if plan not in self._plans:
            raise ValidationFailed(
                [FieldError("plan", f"Unknown plan; one of: {', '.join(sorted(self._plans))}")]
            )

    # -- keys ----------------------------------------------------------------------------

    def issue_key(
        self,
        caller: Caller,
        org_id: str,
        *,
        user: str,
        name: str,
        role: Role,
        expires_at: datetime | None = None,
    ) -> IssuedKey:
        org = self.get_org(caller, org_id)
        if not (caller.is_admin or caller.role is Role.OWNER):
            raise Forbidden("Only an owner of the organization or the admin can create keys")
        if role is Role.ADMIN:
            raise ValidationFailed([FieldError("role", "Organization keys are 'owner' or 'member'")])
        now = self._clock.now()
        if expires_at is not None and expires_at <= now:
            raise ValidationFailed([FieldError("expires_at", "Must be in the future")])
        return self._issue(org.org_id, user=user, name=name, role=role, expires_at=expires_at, now=now)

    def _issue(
        self, org_id: str, *, user: str, name: str, role: Role, expires_at: datetime | None, now: datetime
    ) -> IssuedKey:
        plain = generate_key()
        record = KeyRecord(
            key_id=plain.key_id,
            org_id=org_id,
            user=user,
            name=name,
            role=role,
            key_hash=self._hasher().hash(plain),
            hint=plain.hint,
            created_at=now,
            expires_at=expires_at,
        )
        self._store.put_key(record)
        return IssuedKey(record=record, plain=plain)

    def list_keys(self, caller: Caller, org_id: str | None = None) -> list[KeyRecord]:
        """Owners (and the admin, naming an org) see every key; members see their own."""
        target = org_id or caller.org_id
        if target is None:
            raise ValidationFailed([FieldError("org_id", "The admin must name an organization")])
        org = self.get_org(caller, target)
        keys = self._store.list_keys(org.org_id)
        if caller.role is Role.MEMBER:
            keys = [k for k in keys if k.user == caller.user]
        return keys

    def _owned_key(self, caller: Caller, key_id: str) -> KeyRecord:
        """The key, if this caller may manage it; otherwise not found (no existence leak)."""
        record = self._store.get_key(key_id) if is_valid_key_id(key_id) else None
        if record is None or record.org_id is None or not caller.can_see_org(record.org_id):
            raise NotFound(f"No API key {key_id!r}")
        if caller.role is Role.MEMBER and record.user != caller.user:
            raise NotFound(f"No API key {key_id!r}")
        return record

    def revoke_key(self, caller: Caller, key_id: str) -> KeyRecord:
        self._owned_key(caller, key_id)
        return self._store.revoke_key(key_id, self._clock.now())

    def rotate_key(self, caller: Caller, key_id: str, grace: timedelta = timedelta(0)) -> IssuedKey:
        """A new key with the same org, user, name and role; the old one stops working after
        ``grace`` (immediately by default)."""
        old = self._owned_key(caller, key_id)
        if grace < timedelta(0) or grace > MAX_ROTATION_GRACE:
            raise ValidationFailed([FieldError("grace_seconds", "Must be between 0 and 604800")])
        now = self._clock.now()
        if not old.is_usable(now):
            raise NotFound(f"No active API key {key_id!r}")
        plain = generate_key()
        new = replace(
            old,
            key_id=plain.key_id,
            key_hash=self._hasher().hash(plain),
            hint=plain.hint,
            created_at=now,
            revoked_at=None,
            last_used_at=None,
            rotated_to=None,
        )
        old_expires = now + grace
        if old.expires_at is not None and old.expires_at < old_expires:
            old_expires = old.expires_at
        self._store.rotate_key(old.key_id, new, old_expires)
        return IssuedKey(record=new, plain=plain)
