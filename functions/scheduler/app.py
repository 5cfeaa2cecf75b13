"""The scheduler function (S5), on an EventBridge schedule: renewals, expiry, stale holds, the
monthly usage rollup and alerts for every org. Safe to run twice or late: every step is
idempotent. Every log line carries the run's correlation id (the schedule event's id).

Any event runs the whole job (the schedule's event, or ``sam local invoke -e``). When an org
fails, the others still run, and the function then fails so the error is seen (and retried:
a retry repeats nothing that was done).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tollgate import services

logger = Logger()
tracer = Tracer(auto_patch=False)  # AWS and HTTP calls are patched on first use (tollgate.aws.clients)


class ScheduledRunFailed(Exception):
    """Some orgs failed; the run is reported as failed so that alarms and retries see it."""


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The schedule's event id correlates every line of the run; a manual run has none.
    if not logger.get_correlation_id():
        logger.set_correlation_id(getattr(context, "aws_request_id", None) or "manual")
    report = services.scheduled_work().run().as_dict()
    logger.info("scheduled run", extra={"report": report, "trigger": event.get("id") or "manual"})
    if report["failed_orgs"]:
        raise ScheduledRunFailed(f"{len(report['failed_orgs'])} orgs failed: {report['failed_orgs'][:10]}")
    return report
