"""The caller as the authorizer hands it to every function: the org's context travels with
it, so the request path reads no org item."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tollgate.api.caller import caller_from_context, caller_to_context
from tollgate.errors import Unauthorized
from tollgate.identity.models import Caller, Org, Role

ORG = Org(
    org_id="org_a",
    name="Acme",
    plan="pro",
    created_at=datetime(2025, 1, 1, tzinfo=UTC),
    billing_anchor_day=15,
    settings={"content_policy": {"email": "redact"}, "keep_prompts": False},
    limit_overrides=({"scope": "org", "metric": "requests", "window": "hour", "max": 5},),
)


def test_an_org_callers_context_round_trips_with_the_org() -> None:
    caller = Caller("key_1", "ann", Role.MEMBER, org_id="org_a", plan="pro", org=ORG.context())
    context = caller_to_context(caller)
    # API Gateway allows only flat strings in an authorizer context
    assert all(isinstance(value, str) for value in context.values())
    assert caller_from_context(context) == caller


def test_the_admin_has_no_org() -> None:
    admin = Caller("key_admin", "admin", Role.ADMIN)
    context = caller_to_context(admin)
    assert "org" not in context
    assert caller_from_context(context) == admin


def test_an_unreadable_org_context_leaves_the_org_to_be_read() -> None:
    context = caller_to_context(
        Caller("key_1", "ann", Role.OWNER, org_id="org_a", plan="pro", org=ORG.context())
    )
    context["org"] = json.dumps({"plan": "pro", "billing_anchor_day": "x"})
    caller = caller_from_context(context)
    assert (caller.org_id, caller.org) == ("org_a", None)


def test_a_request_the_authorizer_did_not_pass_is_refused() -> None:
    with pytest.raises(Unauthorized):
        caller_from_context({"user": "ann"})
