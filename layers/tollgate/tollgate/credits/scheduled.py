"""The scheduler's work (S5): what must happen on a clock, for every org.

Each run, for each org: expire lots past their expiry (recording expiry alerts; the previous
cycle's subscription lot among them), start the subscription cycle if it has begun, and
release reservations a dead request left held. Then publish every alert still unpublished.

Every step is an idempotent metering operation, so a run may repeat, overlap another or come
late: a cycle is renewed once, a lot expires once, a hold is released once. Limit windows need
nothing here: they are derived from the time and roll over by themselves.

Usage (S5, S9): each org's closed months are rolled up from their daily aggregates into
monthly ones (``UsageAnalytics.rollup``), recomputed and written whole, so that this step too
may repeat or come late (``docs/usage.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from msgspec import Struct, field

from tollgate.clock import Clock, SystemClock, iso
from tollgate.credits.alerts import AlertPublisher, publish_alerts
from tollgate.metering.service import MeteringService

logger = Logger()
MAX_PUBLISH_ROUNDS = 50


class OrgDirectory(Protocol):
    """Every org id (the scheduler's only need from identity)."""

    def org_ids(self) -> Iterable[str]: ...


class UsageRollup(Protocol):
    """The usage step: roll closed months up (``tollgate.usage.analytics.UsageAnalytics``)."""

    def rollup(self, org_id: str, now: datetime | None = None) -> Sequence[object]: ...


class RunReport(Struct):
    """What one run did, for the log and the function's result."""

    started_at: datetime
    orgs: int = 0
    renewed: int = 0
    expired_entries: int = 0
    released_reservations: int = 0
    alerts_published: int = 0
    rolled_up_months: int = 0
    failed_orgs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": iso(self.started_at),
            "orgs": self.orgs,
            "renewed": self.renewed,
            "expired_entries": self.expired_entries,
            "released_reservations": self.released_reservations,
            "alerts_published": self.alerts_published,
            "rolled_up_months": self.rolled_up_months,
            "failed_orgs": list(self.failed_orgs),
        }


class ScheduledWork:
    """One run of the clock work over every org."""

    def __init__(
        self,
        metering: MeteringService,
        orgs: OrgDirectory,
        publisher: AlertPublisher | None,
        *,
        stale_after: timedelta,
        clock: Clock | None = None,
        usage: UsageRollup | None = None,
    ) -> None:
        self._metering = metering
        self._usage = usage
        self._orgs = orgs
        self._publisher = publisher
        self._stale_after = stale_after
        self._clock = clock or SystemClock()

    def run(self) -> RunReport:
        """Every org, then the alerts. One org's failure does not stop the others; it is
        reported in ``failed_orgs`` (and the next run tries again)."""
        now = self._clock.now()
        report = RunReport(started_at=now)
        for org_id in self._orgs.org_ids():
            report.orgs += 1
            try:
                self.run_org(org_id, now, report)
            except Exception:
                logger.exception("scheduled work failed for an org", extra={"org_id": org_id})
                report.failed_orgs.append(org_id)
        report.alerts_published = self.publish_pending_alerts()
        return report

    def run_org(self, org_id: str, now: datetime, report: RunReport) -> None:
        """The clock work of one org at ``now``. Expiry comes first, so that the lots due (the
        previous cycle's subscription lot among them) are counted in the report; any ledger
        move would expire them anyway."""
        report.expired_entries += len(self._metering.expire_lots(org_id, now))
        cycle_start, _ = self._metering.current_cycle(org_id, now)
        if self._metering.renew_subscription(org_id, cycle_start).renewed:
            report.renewed += 1
        sweep = self._metering.release_stale(org_id, older_than=now - self._stale_after)
        report.released_reservations += len(sweep.released)
        if self._usage is not None:
            report.rolled_up_months += len(self._usage.rollup(org_id, now))

    def publish_pending_alerts(self) -> int:
        """Publish what is unpublished, oldest first, until none is left or the bus refuses."""
        if self._publisher is None:
            return 0
        total = 0
        for _ in range(MAX_PUBLISH_ROUNDS):
            pending = self._metering.unpublished_alerts(limit=100)
            if not pending:
                break
            delivered = publish_alerts(self._metering, self._publisher, pending)
            total += delivered
            if delivered < len(pending):
                break  # the bus refused some: they stay unpublished for the next run
        return total
