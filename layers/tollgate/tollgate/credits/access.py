"""Who may do what with an org's credits (S2), and which org a request is about.

- Any key of the org (member or owner) reads its balance, transactions, alerts, limits and
  availability; owners (and the admin) buy and read purchases; only the platform admin grants
  credits and settles purchases.
- The admin names the org (``org_id``); an org's key acts for its own org. Another org's
  resources are answered as not found (404), never forbidden, so ids cannot be probed; a role
  that lacks a right inside its own org gets 403.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from msgspec.structs import replace

from tollgate.errors import FieldError, Forbidden, ValidationFailed
from tollgate.identity.models import Caller, Org, Role
from tollgate.ids import new_id

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


class OrgLookup(Protocol):
    def get_org(self, caller: Caller, org_id: str) -> Org:
        """The org if this caller may see it; ``NotFound`` otherwise."""
        ...


def acting_for(caller: Caller, org_id: str | None, orgs: OrgLookup) -> tuple[Caller, str]:
    """The caller as it acts on one org, and that org's id.

    An org's key acts for its own org (naming another is 404); the admin must name an
    existing org and then acts with that org's plan."""
    if org_id is None:
        if caller.org_id is None:
            raise ValidationFailed([FieldError("org_id", "The admin must name an organization")])
        return caller, caller.org_id
    if caller.org_id is not None and org_id == caller.org_id:
        return caller, org_id
    org = orgs.get_org(caller, org_id)  # NotFound for another org or a malformed id
    return replace(caller, org_id=org.org_id, plan=org.plan), org.org_id


def require_purchaser(caller: Caller) -> None:
    """Owners and the admin buy credits and see purchases."""
    if caller.role not in (Role.OWNER, Role.ADMIN):
        raise Forbidden("Only an owner of the organization (or the admin) manages purchases")


def require_admin(caller: Caller, action: str) -> None:
    if not caller.is_admin:
        raise Forbidden(f"Only the platform admin can {action}")


def operation_id(caller: Caller, action: str, idempotency_key: str | None) -> str:
    """The id under which the ledger does an operation once.

    With an ``Idempotency-Key`` it is derived from (tenant, action, key), so a retry that gets
    past the HTTP idempotency record (a crash before it was completed) still acts once in the
    ledger. Without one, every request is a new operation."""
    if idempotency_key is None:
        return new_id("op")
    digest = hashlib.sha256(f"{caller.scope}\n{action}\n{idempotency_key}".encode()).hexdigest()
    return f"op_{action}_{digest[:40]}"


def derived_id(prefix: str, caller: Caller, action: str, idempotency_key: str | None) -> str:
    """A resource id (shaped like ``tollgate.ids.new_id``) that is the same for every retry of
    one idempotent request, and new without an ``Idempotency-Key``."""
    if idempotency_key is None:
        return new_id(prefix)
    digest = hashlib.sha256(f"{caller.scope}\n{action}\n{idempotency_key}".encode()).digest()
    number = int.from_bytes(digest[:17], "big")
    chars = []
    for _ in range(26):
        number, rem = divmod(number, 32)
        chars.append(_CROCKFORD[rem])
    return f"{prefix}_{''.join(chars)}"
