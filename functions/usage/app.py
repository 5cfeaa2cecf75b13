"""The usage function: the caller's limits (S3). Usage analytics (S9) join it later.

``GET /v1/limits`` answers whether the caller may make a request now, and why not, with every
limit that applies to it; it carries the ``RateLimit-*`` headers a ``429`` refusal would.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tollgate import services
from tollgate.api.params import Query
from tollgate.api.resolver import build_resolver, current_caller, handle_api_event
from tollgate.api.schemas.common import exact_json_response
from tollgate.api.schemas.limits import LimitsOut, rate_limit_headers
from tollgate.credits.access import acting_for

logger = Logger()
tracer = Tracer(auto_patch=False)  # AWS and HTTP calls are patched on first use (tollgate.aws.clients)
app = build_resolver()


@app.get("/v1/limits")
def limits(org_id: Annotated[str | None, Query(min_length=1, max_length=40)] = None) -> Response[str]:
    caller, _ = acting_for(current_caller(app), org_id, services.identity())
    statuses = services.metering().limits_status(caller)
    now = datetime.now(UTC)
    return exact_json_response(200, LimitsOut.of(statuses, now), headers=rate_limit_headers(statuses, now))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_api_event(app, event, context)
