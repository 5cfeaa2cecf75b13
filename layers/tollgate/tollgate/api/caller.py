"""The caller, as the authorizer put it in the request context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate.errors import Unauthorized
from tollgate.identity.models import Caller, Role


def caller_to_context(caller: Caller) -> dict[str, str]:
    """What the authorizer returns as its context (API Gateway allows only flat strings)."""
    return {
        "key_id": caller.key_id,
        "user": caller.user,
        "role": caller.role.value,
        "org_id": caller.org_id or "",
        "plan": caller.plan or "",
    }


def caller_from_context(context: Mapping[str, Any] | None) -> Caller:
    """The caller from the request context; refuses a request the authorizer did not pass."""
    if not context or not context.get("key_id") or not context.get("role"):
        raise Unauthorized("This operation needs an API key")
    try:
        role = Role(str(context["role"]))
    except ValueError:
        raise Unauthorized("Unknown role in the request context") from None
    return Caller(
        key_id=str(context["key_id"]),
        user=str(context.get("user") or ""),
        role=role,
        org_id=str(context.get("org_id") or "") or None,
        plan=str(context.get("plan") or "") or None,
    )
