"""Which limits apply to a request, the counter each one counts in, and how much it counts.

A limit (S3) is (scope, metric, window, max), optionally narrowed to a generation kind and/or a
provider. Plan limits come from ``data/plans.toml``; an org override with the same identity
replaces a plan limit, any other override is added.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from msgspec import Struct

from tollgate.metering.models import Charge
from tollgate.metering.windows import QuotaWindow
from tollgate.plans import Kind, LimitSpec, Metric


def merge_limits(plan_limits: Iterable[LimitSpec], overrides: Iterable[LimitSpec]) -> list[LimitSpec]:
    """The plan's limits with the org's overrides applied (same identity replaces, else added)."""
    merged: dict[tuple[str, str, str, str | None, str | None], LimitSpec] = {
        spec.identity: spec for spec in plan_limits
    }
    for spec in overrides:
        merged[spec.identity] = spec
    return list(merged.values())


def limit_applies(spec: LimitSpec, kind: Kind | None, provider: str | None) -> bool:
    """A narrowed limit applies only to requests of its kind / provider."""
    if spec.kind is not None and spec.kind != kind:
        return False
    return spec.provider is None or spec.provider == provider


def usage_amount(metric: Metric, charge: Charge) -> int:
    """What one request counts in a limit of this metric."""
    if metric == "requests":
        return 1
    if metric == "tokens":
        return charge.tokens
    return charge.cost_micro_usd


class ApplicableLimit(Struct, frozen=True):
    """A limit applied to one subject (the org or the user) in the window containing now."""

    spec: LimitSpec
    subject: str
    window: QuotaWindow

    @property
    def counter_key(self) -> str:
        """The counter item's sort key: window first (rollover by key), subject last (free text)."""
        spec = self.spec
        return (
            f"C#{self.window.key}#{spec.metric}#{spec.scope}#{spec.kind or '*'}#{spec.provider or '*'}"
            f"#{self.subject}"
        )

    @property
    def refusal_code(self) -> str:
        """``rate_limited`` for request counts, ``quota_exceeded`` for tokens and cost."""
        return "rate_limited" if self.spec.metric == "requests" else "quota_exceeded"


def applicable_limits(
    specs: Sequence[LimitSpec],
    *,
    org_id: str,
    user: str,
    kind: Kind | None,
    provider: str | None,
    at: datetime,
    anchor_day: int,
) -> list[ApplicableLimit]:
    """Every limit that applies to a request of ``kind`` to ``provider`` by ``user`` at ``at``."""
    found = []
    for spec in specs:
        if not limit_applies(spec, kind, provider):
            continue
        subject = org_id if spec.scope == "org" else user
        found.append(ApplicableLimit(spec, subject, QuotaWindow.containing(spec.window, at, anchor_day)))
    return found


def all_limits(
    specs: Sequence[LimitSpec], *, org_id: str, user: str, at: datetime, anchor_day: int
) -> list[ApplicableLimit]:
    """Every limit of the org for this user, whatever the kind or provider (GET /v1/limits)."""
    return [
        ApplicableLimit(
            spec, org_id if spec.scope == "org" else user, QuotaWindow.containing(spec.window, at, anchor_day)
        )
        for spec in specs
    ]
