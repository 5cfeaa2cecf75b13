"""The caller, as the authorizer put it in the request context."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tollgate.errors import Unauthorized
from tollgate.identity.models import Caller, OrgContext, Role


def _org_to_json(org: OrgContext) -> str:
    return json.dumps(
        {
            "plan": org.plan,
            "billing_anchor_day": org.billing_anchor_day,
            "settings": dict(org.settings),
            "limit_overrides": [dict(spec) for spec in org.limit_overrides],
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def _org_from_json(text: str) -> OrgContext | None:
    try:
        raw = json.loads(text)
        return OrgContext(
            plan=str(raw["plan"]),
            billing_anchor_day=int(raw.get("billing_anchor_day", 1)),
            settings=dict(raw.get("settings") or {}),
            limit_overrides=tuple(dict(spec) for spec in raw.get("limit_overrides") or ()),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # functions then read the org themselves


def caller_to_context(caller: Caller) -> dict[str, str]:
    """What the authorizer returns as its context (API Gateway allows only flat strings)."""
    context = {
        "key_id": caller.key_id,
        "user": caller.user,
        "role": caller.role.value,
        "org_id": caller.org_id or "",
        "plan": caller.plan or "",
    }
    if caller.org is not None:
        context["org"] = _org_to_json(caller.org)
    return context


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
        org=_org_from_json(str(context["org"])) if context.get("org") else None,
    )
