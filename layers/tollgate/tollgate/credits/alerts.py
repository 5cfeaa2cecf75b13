"""Alerts leaving the system: the port, and what an alert event says.

The metering core records an alert inside the ledger move that crossed a threshold (so it
exists exactly once per crossing). Publishing happens after that commit, at least once: the
function that caused the move publishes right away, and the scheduler publishes whatever is
still unpublished. An alert is marked published only after the bus accepted it, so a
consumer may see an alert twice but never misses one; ``alert_id`` lets it deduplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger

from tollgate.credits.amounts import credits_of_units

if TYPE_CHECKING:  # annotations only: the metering models load with the metering service
    from tollgate.metering.models import Alert

logger = Logger()
ALERT_SOURCE = "tollgate.credits"
ALERT_DETAIL_TYPE = "Tollgate Credit Alert"


class AlertPublisher(Protocol):
    """Somewhere alerts go (an EventBridge bus in AWS)."""

    def publish(self, alerts: Sequence[Alert]) -> set[str]:
        """Publish the alerts; return the ids of those the destination accepted."""
        ...


def alert_detail(alert: Alert) -> dict[str, Any]:
    """The ``detail`` of an alert event. Credits as exact decimals, and as integer units."""
    return {
        "alert_id": alert.alert_id,
        "org_id": alert.org_id,
        "kind": alert.kind.value,
        "threshold": credits_of_units(alert.threshold),
        "threshold_units": alert.threshold,
        "threshold_percent": alert.threshold_percent,
        "balance": credits_of_units(alert.balance),
        "balance_units": alert.balance,
        "topup_reference": alert.topup_reference,
        "at": alert.at,
    }


class AlertMarks(Protocol):
    """Where an alert is marked published (the metering service)."""

    def mark_alert_published(self, org_id: str, alert_id: str) -> None: ...


def publish_alerts(marks: AlertMarks, publisher: AlertPublisher, alerts: Sequence[Alert]) -> int:
    """Publish the unpublished ones among ``alerts`` and mark those the destination accepted.

    Marked only after acceptance, so an alert may be published twice (a crash in between)
    but never lost. Returns how many were published.
    """
    pending = [alert for alert in alerts if not alert.published]
    if not pending:
        return 0
    delivered = publisher.publish(pending)
    for alert in pending:
        if alert.alert_id in delivered:
            marks.mark_alert_published(alert.org_id, alert.alert_id)
    return len(delivered)


class RecentAlerts(AlertMarks, Protocol):
    def alerts(self, org_id: str, limit: int = 50) -> list[Alert]: ...


def publish_recent_alerts(metering: RecentAlerts, publisher: AlertPublisher | None, org_id: str) -> int:
    """After a ledger move of ``org_id`` committed: publish the alerts it may have recorded.

    Never raises: the money has moved already, and whatever is not published now is published
    by the scheduler's next run."""
    if publisher is None:
        return 0
    try:
        return publish_alerts(metering, publisher, metering.alerts(org_id, limit=20))
    except Exception:
        logger.exception("alerts not published now; the scheduler will", extra={"org_id": org_id})
        return 0
