"""The credits surfaces wired to their adapters, built from the settings.

This is composition-root code: it belongs beside the rest in ``tollgate.services`` and lives
here only until that file is merged (others edit it in the same issue). Nothing is built at
import time; the boto3 clients come from ``tollgate.aws.clients`` on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from aws_lambda_powertools.utilities import parameters

from tollgate import services
from tollgate.aws.events import EventBridgePublisher
from tollgate.aws.identity_store import GSI1
from tollgate.credits.alerts import AlertPublisher
from tollgate.credits.scheduled import ScheduledWork
from tollgate.errors import ServiceUnavailable
from tollgate.settings import get_settings


def alert_publisher() -> AlertPublisher | None:
    """The alerts bus, or ``None`` where none is configured (alerts then wait for the
    scheduler of an environment that has one)."""
    bus = get_settings().event_bus_name
    return EventBridgePublisher(bus) if bus else None


def webhook_secrets() -> list[bytes]:
    """The payment webhook's signing secret(s), cached by Powertools for a few minutes."""
    settings = get_settings()
    try:
        value = parameters.get_secret(settings.payment_webhook_secret, max_age=settings.secrets_cache_seconds)
    except parameters.GetParameterError:
        raise ServiceUnavailable(
            "The webhook secret cannot be read; retry shortly", headers={"Retry-After": "5"}
        ) from None
    text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return [text.encode("utf-8")] if text else []


class TableOrgDirectory:
    """Org ids from the table's ``gsi1`` partition ``ORGS`` (every org item is on it).

    To move behind ``IdentityStore.list_orgs`` when the identity domain offers it."""

    def org_ids(self) -> Iterator[str]:
        start = None
        while True:
            items, start = services.table().query(
                "gsi1pk = :orgs", values={":orgs": "ORGS"}, index=GSI1, start_key=start
            )
            for item in items:
                yield str(item["org_id"])
            if start is None:
                return


def scheduled_work() -> ScheduledWork:
    """One run's worth of the scheduler, over every org."""
    settings = get_settings()
    return ScheduledWork(
        services.metering(),
        TableOrgDirectory(),
        alert_publisher(),
        stale_after=timedelta(seconds=settings.stale_reservation_seconds),
    )
