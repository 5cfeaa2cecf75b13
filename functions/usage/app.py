"""The usage function: the caller's limits (S3), usage analytics and the dashboard (S9).

- ``GET /v1/limits``: whether the caller may make a request now, and why not, with every limit
  that applies to it; it carries the ``RateLimit-*`` headers a ``429`` refusal would.
- ``GET /v1/usage``: figures per day, model, provider, feature or user, from aggregates.
- ``GET /v1/usage/logs``: the usage log, newest first, filtered, a page at a time.
- ``GET /v1/analytics/dashboard``: everything the dashboard page shows, in one answer.
- ``GET /dashboard``: the dashboard page itself (no key needed to load it: a browser cannot
  send one when opening a page; the page asks for the key and calls the API with it).

Owners see their org (and may narrow to a user), members their own user's figures, the admin
names the org. See ``docs/usage.md``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tollgate import services
from tollgate.api.pages import StaticPage
from tollgate.api.params import Query, responds
from tollgate.api.resolver import build_resolver, current_caller, handle_api_event
from tollgate.api.rest import Response
from tollgate.api.schemas.common import exact_json_response
from tollgate.api.schemas.limits import LimitsOut, rate_limit_headers
from tollgate.api.schemas.usage import DashboardOut, LogPageOut, UsageReportOut
from tollgate.credits.access import acting_for
from tollgate.usage.analytics import DEFAULT_LOG_RANGE_DAYS, DateRange, GroupBy, scope_for
from tollgate.usage.log import LogFilter, UsageStatus

logger = Logger()
tracer = Tracer(auto_patch=False)  # AWS and HTTP calls are patched on first use (tollgate.aws.clients)
app = build_resolver()
# The page is one HTML document with its style and script inline, allowed by their hashes
# in a strict Content-Security-Policy (nothing from any other origin). Read on first use.
DASHBOARD = StaticPage(Path(__file__).with_name("dashboard.html"))

OrgIdQuery = Annotated[str | None, Query(min_length=1, max_length=40)]
UserQuery = Annotated[str | None, Query(min_length=1, max_length=256)]
FromQuery = Annotated[date | None, Query(alias="from")]
ToQuery = Annotated[date | None, Query()]


def _conversion_rate() -> int:
    return services.metering().pricing.features.conversion.micro_usd_per_credit


@app.get("/v1/limits")
@responds(200, LimitsOut)
def limits(org_id: OrgIdQuery = None) -> Response[str]:
    caller, _ = acting_for(current_caller(app), org_id, services.identity())
    statuses = services.metering().limits_status(caller)
    now = datetime.now(UTC)
    return exact_json_response(200, LimitsOut.of(statuses, now), headers=rate_limit_headers(statuses, now))


@app.get("/v1/usage")
@responds(200, UsageReportOut)
def usage(
    from_: FromQuery = None,
    to: ToQuery = None,
    group_by: Annotated[GroupBy, Query()] = GroupBy.DAY,
    org_id: OrgIdQuery = None,
    user: UserQuery = None,
) -> Response[str]:
    analytics = services.usage_analytics()
    _, scope = scope_for(current_caller(app), org_id, user, services.identity())
    report = analytics.report(scope, DateRange.of(from_, to, analytics.today()), group_by)
    return exact_json_response(200, UsageReportOut.of(report, _conversion_rate()))


@app.get("/v1/usage/logs")
@responds(200, LogPageOut)
def usage_logs(
    from_: FromQuery = None,
    to: ToQuery = None,
    org_id: OrgIdQuery = None,
    user: UserQuery = None,
    model: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    feature: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    status: Annotated[UsageStatus | None, Query()] = None,
    cache_hit: Annotated[bool | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
) -> Response[str]:
    analytics = services.usage_analytics()
    _, scope = scope_for(current_caller(app), org_id, user, services.identity())
    period = DateRange.of(from_, to, analytics.today(), default_days=DEFAULT_LOG_RANGE_DAYS)
    filters = LogFilter(user=user, model=model, feature=feature, status=status, cache_hit=cache_hit)
    page = analytics.logs(scope, period, filters, limit, cursor)
    return exact_json_response(200, LogPageOut.of(scope, period, page))


@app.get("/v1/analytics/dashboard")
@responds(200, DashboardOut)
def analytics_dashboard(
    from_: FromQuery = None,
    to: ToQuery = None,
    org_id: OrgIdQuery = None,
    user: UserQuery = None,
) -> Response[str]:
    caller = current_caller(app)
    analytics = services.usage_analytics()
    acting, scope = scope_for(caller, org_id, user, services.identity())
    dashboard = analytics.dashboard(scope, DateRange.of(from_, to, analytics.today()))
    metering = services.metering()
    out = DashboardOut.of(
        dashboard,
        role=caller.role.value,
        balance=metering.balance(scope.org_id),
        limits=metering.limits_status(acting),
        micro_usd_per_credit=_conversion_rate(),
        now=datetime.now(UTC),
    )
    return exact_json_response(200, out, headers={"Cache-Control": "no-store"})


@app.get("/dashboard")
@responds(200, description="The dashboard page", content_type="text/html")
def dashboard() -> Response[str]:
    return DASHBOARD.response()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_api_event(app, event, context)
