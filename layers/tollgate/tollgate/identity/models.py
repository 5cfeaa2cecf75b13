"""Organizations, key records and callers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from msgspec import Struct, field


class Role(StrEnum):
    ADMIN = "admin"  # platform operator: creates orgs, grants credits, settles purchases
    OWNER = "owner"  # manages its org's keys, templates, purchases; sees the whole org's usage
    MEMBER = "member"  # generates; sees its own requests and its org's balance and limits


class Org(Struct, frozen=True):
    org_id: str
    name: str
    plan: str
    created_at: datetime
    billing_anchor_day: int = 1
    settings: dict[str, object] = field(default_factory=dict)
    # Limits that replace or extend the plan's (``LimitSpec`` as JSON; metering validates them).
    limit_overrides: tuple[Mapping[str, Any], ...] = ()

    def context(self) -> OrgContext:
        return OrgContext(
            plan=self.plan,
            billing_anchor_day=self.billing_anchor_day,
            settings=self.settings,
            limit_overrides=self.limit_overrides,
        )


class OrgContext(Struct, frozen=True):
    """What the authorizer read of the caller's org, handed to every function with the caller
    so that the request path needs no read of the org: its plan, billing anchor day, settings
    (content policy, whether prompts are kept, ...) and limit overrides. As fresh as the
    authorizer's cache (``AuthorizerCacheTtl``)."""

    plan: str
    billing_anchor_day: int = 1
    settings: Mapping[str, object] = field(default_factory=dict)
    limit_overrides: tuple[Mapping[str, Any], ...] = ()


class KeyRecord(Struct, frozen=True):
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


class Caller(Struct, frozen=True):
    """Who is calling: what the authorizer hands to every function."""

    key_id: str
    user: str
    role: Role
    org_id: str | None = None  # None for the platform admin
    plan: str | None = None
    org: OrgContext | None = None  # None for the platform admin

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def can_see_org(self, org_id: str) -> bool:
        return self.is_admin or self.org_id == org_id

    @property
    def scope(self) -> str:
        """The tenant this caller acts for (used to scope idempotency keys and the like)."""
        return self.org_id if self.org_id is not None else f"admin:{self.key_id}"
