"""Bodies of the usage API (S9): ``GET /v1/usage``, ``GET /v1/usage/logs`` and
``GET /v1/analytics/dashboard``.

Amounts are exact JSON numbers (written by ``exact_json_response``): USD with at most 6
decimals, credits with at most 4, rates with 4. ``margin_usd`` is the credits charged at the
conversion rate of ``data/features.toml`` (``revenue_usd``, rounded down to the micro-USD)
less the provider cost. Latency percentiles are the upper bound of their histogram bucket
(``tollgate.usage.figures``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tollgate.api.schemas.common import ResponseModel
from tollgate.api.schemas.credits import BalanceOut
from tollgate.api.schemas.limits import LimitsOut
from tollgate.credits.amounts import credits_of_units, usd_of_micro
from tollgate.usage.analytics import Dashboard, DateRange, LogPage, UsageGroup, UsageReport, UsageScope
from tollgate.usage.figures import (
    LATENCY_BUCKETS_MS,
    UsageFigures,
    margin_micro_usd,
    outcome_of,
    revenue_micro_usd,
)
from tollgate.usage.log import UsageLogEntry

if TYPE_CHECKING:  # annotations only: the metering models load with the metering service
    from tollgate.metering.models import Balance, LimitStatus


class PeriodOut(ResponseModel):
    """The UTC days covered, both included."""

    start: date
    end: date
    days: int

    @classmethod
    def of(cls, period: DateRange) -> PeriodOut:
        return cls(start=period.start, end=period.end, days=period.days)


class FiguresOut(ResponseModel):
    """The figures of a set of requests. ``failures`` includes ``refusals`` (refused by
    Tollgate before any provider call) and ``provider_errors``; ``cache_hit_rate`` is
    ``cache_hits / successes``; latencies are of successful requests."""

    requests: int
    successes: int
    failures: int
    refusals: int
    provider_errors: int
    cache_hits: int
    cache_hit_rate: Decimal | None
    input_tokens: int
    output_tokens: int
    tokens: int
    cost_usd: Decimal
    credits: Decimal
    revenue_usd: Decimal
    margin_usd: Decimal
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    latency_mean_ms: int | None

    @classmethod
    def fields_of(cls, figures: UsageFigures, micro_usd_per_credit: int) -> dict[str, object]:
        return {
            "requests": figures.requests,
            "successes": figures.successes,
            "failures": figures.failures,
            "refusals": figures.refusals,
            "provider_errors": figures.provider_errors,
            "cache_hits": figures.cache_hits,
            "cache_hit_rate": figures.cache_hit_rate(),
            "input_tokens": figures.input_tokens,
            "output_tokens": figures.output_tokens,
            "tokens": figures.tokens,
            "cost_usd": usd_of_micro(figures.cost_micro_usd),
            "credits": credits_of_units(figures.credits),
            "revenue_usd": usd_of_micro(revenue_micro_usd(figures.credits, micro_usd_per_credit)),
            "margin_usd": usd_of_micro(margin_micro_usd(figures, micro_usd_per_credit)),
            "latency_p50_ms": figures.percentile(50),
            "latency_p95_ms": figures.percentile(95),
            "latency_mean_ms": figures.mean_latency_ms(),
        }

    @classmethod
    def of(cls, figures: UsageFigures, micro_usd_per_credit: int) -> FiguresOut:
        return cls.model_validate(cls.fields_of(figures, micro_usd_per_credit))


class GroupOut(FiguresOut):
    """One group of a report: ``key`` is the day (``yyyy-mm-dd``), model, provider, feature or
    user."""

    key: str

    @classmethod
    def of_group(cls, group: UsageGroup, micro_usd_per_credit: int) -> GroupOut:
        return cls.model_validate({"key": group.key, **cls.fields_of(group.figures, micro_usd_per_credit)})


def _groups(groups: Sequence[UsageGroup], rate: int) -> list[GroupOut]:
    return [GroupOut.of_group(group, rate) for group in groups]


class UsageReportOut(ResponseModel):
    """``GET /v1/usage``: figures per group, and their total (exactly the sum of the groups).
    ``user`` is set when the figures are one user's."""

    org_id: str
    user: str | None
    period: PeriodOut
    group_by: str
    groups: list[GroupOut]
    total: FiguresOut

    @classmethod
    def of(cls, report: UsageReport, micro_usd_per_credit: int) -> UsageReportOut:
        return cls(
            org_id=report.scope.org_id,
            user=report.scope.user,
            period=PeriodOut.of(report.range),
            group_by=report.group_by.value,
            groups=_groups(report.groups, micro_usd_per_credit),
            total=FiguresOut.of(report.total, micro_usd_per_credit),
        )


class LogEntryOut(ResponseModel):
    """One usage log entry. ``outcome``: success, refused, provider_error or failed."""

    request_id: str
    at: datetime
    user: str
    key_id: str
    model: str
    provider: str
    feature: str
    kind: str
    status: str
    outcome: str
    error_class: str | None
    error_code: str | None
    cache_hit: bool
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    credits: Decimal
    latency_ms: int
    template_id: str | None
    template_version: int | None

    @classmethod
    def of(cls, entry: UsageLogEntry) -> LogEntryOut:
        return cls(
            request_id=entry.request_id,
            at=entry.at,
            user=entry.user,
            key_id=entry.key_id,
            model=entry.model,
            provider=entry.provider,
            feature=entry.feature,
            kind=entry.kind,
            status=entry.status.value,
            outcome=outcome_of(entry).value,
            error_class=entry.error_class,
            error_code=entry.error_code,
            cache_hit=entry.cache_hit,
            input_tokens=entry.input_tokens,
            output_tokens=entry.output_tokens,
            cost_usd=usd_of_micro(entry.cost_micro_usd),
            credits=credits_of_units(entry.credits),
            latency_ms=entry.latency_ms,
            template_id=entry.template_id,
            template_version=entry.template_version,
        )


class LogPageOut(ResponseModel):
    """``GET /v1/usage/logs``: newest first; pass ``next_cursor`` back (with the same range)
    for more. A page may be short, even empty, while ``next_cursor`` is set."""

    org_id: str
    user: str | None
    period: PeriodOut
    entries: list[LogEntryOut]
    next_cursor: str | None

    @classmethod
    def of(cls, scope: UsageScope, period: DateRange, page: LogPage) -> LogPageOut:
        return cls(
            org_id=scope.org_id,
            user=scope.user,
            period=PeriodOut.of(period),
            entries=[LogEntryOut.of(entry) for entry in page.entries],
            next_cursor=page.next_cursor,
        )


class LatencyBucketOut(ResponseModel):
    """Successful requests that took at most ``le_ms`` (and more than the bucket before);
    ``le_ms`` is ``None`` for the last bucket (above every bound)."""

    le_ms: int | None
    count: int


class ConversionOut(ResponseModel):
    usd_per_credit: Decimal


class DashboardOut(ResponseModel):
    """``GET /v1/analytics/dashboard``: everything the dashboard page shows, in one answer."""

    org_id: str
    user: str | None
    role: str
    generated_at: datetime
    period: PeriodOut
    total: FiguresOut
    days: list[GroupOut]
    models: list[GroupOut]
    providers: list[GroupOut]
    features: list[GroupOut]
    latency_histogram: list[LatencyBucketOut]
    conversion: ConversionOut
    balance: BalanceOut
    limits: LimitsOut

    @classmethod
    def of(
        cls,
        dashboard: Dashboard,
        *,
        role: str,
        balance: Balance,
        limits: Sequence[LimitStatus],
        micro_usd_per_credit: int,
        now: datetime,
    ) -> DashboardOut:
        rate = micro_usd_per_credit
        bounds: list[int | None] = [*LATENCY_BUCKETS_MS, None]
        return cls(
            org_id=dashboard.scope.org_id,
            user=dashboard.scope.user,
            role=role,
            generated_at=now,
            period=PeriodOut.of(dashboard.range),
            total=FiguresOut.of(dashboard.total, rate),
            days=_groups(dashboard.days, rate),
            models=_groups(dashboard.models, rate),
            providers=_groups(dashboard.providers, rate),
            features=_groups(dashboard.features, rate),
            latency_histogram=[
                LatencyBucketOut(le_ms=bound, count=count)
                for bound, count in zip(bounds, dashboard.total.latency_histogram, strict=True)
            ],
            conversion=ConversionOut(usd_per_credit=usd_of_micro(rate)),
            balance=BalanceOut.of(balance),
            limits=LimitsOut.of(limits, now),
        )
