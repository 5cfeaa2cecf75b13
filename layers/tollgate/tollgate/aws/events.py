"""Alerts to an EventBridge bus (the adapter of ``tollgate.credits.alerts.AlertPublisher``).

One ``PutEvents`` call per 10 alerts (the API's batch limit). An entry the bus refused is
reported as not delivered, so it stays unpublished and the scheduler tries it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger

from tollgate.aws.clients import client
from tollgate.credits.alerts import ALERT_DETAIL_TYPE, ALERT_SOURCE, alert_detail
from tollgate.credits.amounts import exact_json
from tollgate.metering.models import Alert

logger = Logger()
_BATCH = 10


class EventBridgePublisher:
    """Publishes alerts as ``Tollgate Credit Alert`` events from ``tollgate.credits``."""

    def __init__(self, bus_name: str, events_client: Any | None = None) -> None:
        self.bus_name = bus_name
        self._client = events_client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client("events")
        return self._client

    def publish(self, alerts: Sequence[Alert]) -> set[str]:
        delivered: set[str] = set()
        for start in range(0, len(alerts), _BATCH):
            batch = alerts[start : start + _BATCH]
            entries = [
                {
                    "EventBusName": self.bus_name,
                    "Source": ALERT_SOURCE,
                    "DetailType": ALERT_DETAIL_TYPE,
                    "Detail": exact_json(alert_detail(alert)),
                    "Resources": [],
                    "Time": alert.at,
                }
                for alert in batch
            ]
            result = self.client.put_events(Entries=entries)
            for alert, outcome in zip(batch, result.get("Entries", []), strict=False):
                if outcome.get("EventId") and not outcome.get("ErrorCode"):
                    delivered.add(alert.alert_id)
                else:
                    logger.warning(
                        "alert not accepted by the bus",
                        extra={"alert_id": alert.alert_id, "error": outcome.get("ErrorCode")},
                    )
        return delivered
