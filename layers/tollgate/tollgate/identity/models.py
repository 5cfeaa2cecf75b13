"""Organizations, key records and callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # platform operator: creates orgs, grants credits, settles purchases
    OWNER = "owner"  # manages its org's keys, templates, purchases; sees the whole org's usage
    MEMBER = "member"  # generates; sees its own requests and its org's balance and limits


@dataclass(frozen=True)
class Org:
    org_id: str
    name: str
    plan: str
    created_at: datetime
    billing_anchor_day: int = 1
    settings: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyRecord:
    """A stored API key: everything but the key itself (only its HMAC)."""

    key_id: str
    org_id: str | None
    user: str
    name: str
    role: Role
    key_hash: str
    hint: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    rotated_to: str | None = None

    def is_usable(self, at: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= at:
            return False
        return self.expires_at is None or self.expires_at > at


@dataclass(frozen=True)
class Caller:
    """Who is calling: what the authorizer hands to every function."""

    key_id: str
    user: str
    role: Role
    org_id: str | None = None  # None for the platform admin
    plan: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def can_see_org(self, org_id: str) -> bool:
        return self.is_admin or self.org_id == org_id

    @property
    def scope(self) -> str:
        """The tenant this caller acts for (used to scope idempotency keys and the like)."""
        return self.org_id if self.org_id is not None else f"admin:{self.key_id}"
