"""The scheduler (S5): renewals, expiry, stale holds and alerts for every org; safe to run
twice or late. Runs the template's SchedulerFunction with events/scheduler.json, and the same
work under a moved clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Api, Tenant, alerts_to_queue, drain_queue, load_event
from tollgate import services
from tollgate.aws.metering_store import DynamoMeteringStore
from tollgate.clock import FixedClock
from tollgate.credits.scheduled import ScheduledWork
from tollgate.identity.models import Caller, Role
from tollgate.ids import new_id
from tollgate.metering.models import Alert, LotKind, Usage
from tollgate.metering.pricing import default_pricing
from tollgate.metering.service import MeteringService
from tollgate.metering.windows import billing_cycle
from tollgate.plans import load_plans
from tollgate_local.gateway import FunctionFailed
from tollgate_local.invoke import in_process_invoker
from tollgate_local.resources import CreatedStack
from tollgate_local.template import default_template

STARTER_MONTHLY = 1_000_000  # 100 credits, in units


def run_scheduler() -> dict[str, Any]:
    """Invoke the template's SchedulerFunction with the sample schedule event."""
    return in_process_invoker(default_template())("SchedulerFunction", load_event("scheduler"))


def balance(org_id: str) -> int:
    return services.metering().balance(org_id).balance


def assert_ledger_matches_balance(org_id: str) -> None:
    store = DynamoMeteringStore(services.table())
    entries = store.all_entries(org_id)
    running = 0
    for entry in entries:
        running += entry.amount
        assert entry.balance_after == running, entry
    assert running == balance(org_id)


class Clocked:
    """The metering service and the scheduler's work on one movable clock."""

    def __init__(self, at: datetime, publisher: Any = "bus") -> None:
        self.clock = FixedClock(at)
        self.metering = MeteringService(
            DynamoMeteringStore(services.table()), default_pricing(), load_plans(), clock=self.clock
        )
        self.work = ScheduledWork(
            self.metering,
            services.org_directory(),
            services.alert_publisher() if publisher == "bus" else publisher,
            stale_after=timedelta(hours=2),
            clock=self.clock,
        )

    def run_at(self, at: datetime) -> dict[str, Any]:
        self.clock.set(at)
        return self.work.run().as_dict()


class RefusingPublisher:
    """A bus that accepts nothing (throttled, down)."""

    def __init__(self) -> None:
        self.offered = 0

    def publish(self, alerts: Sequence[Alert]) -> set[str]:
        self.offered += len(alerts)
        return set()


def test_the_sample_event_runs_and_a_second_run_renews_nothing(make_tenant: Any) -> None:
    # Given two starter orgs (100 credits a month) and a free one (none)
    a, b = make_tenant("A", plan="starter"), make_tenant("B", plan="starter")
    free = make_tenant("F", plan="free")
    # When the scheduler runs twice
    first = run_scheduler()
    second = run_scheduler()
    # Then the starter orgs were renewed once, in the first run only
    assert first["orgs"] == second["orgs"] == 3
    assert first["renewed"] >= 2
    assert second["renewed"] == 0
    assert first["failed_orgs"] == second["failed_orgs"] == []
    for tenant in (a, b):
        assert balance(tenant.org_id) == STARTER_MONTHLY
        (lot,) = services.metering().balance(tenant.org_id).lots
        assert lot.kind is LotKind.SUBSCRIPTION
        assert_ledger_matches_balance(tenant.org_id)
    assert balance(free.org_id) == 0


def test_a_late_run_renews_the_new_cycle_once_and_the_old_lot_expires(make_tenant: Any) -> None:
    # Given a starter org renewed in its current cycle
    tenant: Tenant = make_tenant(plan="starter")
    now = datetime.now(UTC)
    clocked = Clocked(now)
    assert clocked.run_at(now)["renewed"] == 1
    # When the next cycle began three days ago and the scheduler only runs now, twice
    _, cycle_end = billing_cycle(now, 1)
    late = cycle_end + timedelta(days=3)
    first = clocked.run_at(late)
    again = clocked.run_at(late + timedelta(minutes=15))
    # Then the new cycle was renewed once, and what was left of the old lot expired
    assert (first["renewed"], again["renewed"]) == (1, 0)
    account = clocked.metering.balance(tenant.org_id)
    assert account.balance == STARTER_MONTHLY
    (lot,) = account.lots
    assert lot.expires_at is not None
    assert lot.expires_at > late
    kinds = [e.kind.value for e in DynamoMeteringStore(services.table()).all_entries(tenant.org_id)]
    assert kinds.count("subscription_renewal") == 2
    assert kinds.count("expiry") == 1
    assert (first["expired_entries"], again["expired_entries"]) == (1, 0)
    assert_ledger_matches_balance(tenant.org_id)


def test_lots_past_expiry_expire_with_an_alert_published_once(make_tenant: Any, stack: CreatedStack) -> None:
    # Given a free org with a promo lot that expires tomorrow, and the alerts bus routed to a queue
    queue = alerts_to_queue(stack)
    tenant: Tenant = make_tenant(plan="free")
    now = datetime.now(UTC)
    clocked = Clocked(now)
    clocked.metering.grant(
        tenant.org_id, 50_000, LotKind.PROMO, expires_at=now + timedelta(days=1), operation_id="promo-1"
    )
    # When the scheduler runs two days later, twice
    first = clocked.run_at(now + timedelta(days=2))
    second = clocked.run_at(now + timedelta(days=2, minutes=15))
    # Then the lot expired once, an expiry alert was recorded and published once
    assert (first["expired_entries"], second["expired_entries"]) == (1, 0)
    assert balance(tenant.org_id) == 0
    kinds = [e.kind.value for e in DynamoMeteringStore(services.table()).all_entries(tenant.org_id)]
    assert kinds == ["grant", "expiry"]
    alerts = services.metering().alerts(tenant.org_id)
    expiry = [a for a in alerts if a.kind.value == "expiry"]
    assert len(expiry) == 1
    assert expiry[0].published
    events = [e for e in drain_queue(queue) if e["detail"]["kind"] == "expiry"]
    assert [e["detail"]["alert_id"] for e in events] == [expiry[0].alert_id]
    assert events[0]["detail"]["threshold"] == 5  # 50,000 units = 5 credits, an exact JSON number
    assert_ledger_matches_balance(tenant.org_id)


def test_stale_reservations_are_released_and_fresh_ones_kept(
    api: Api, admin_key: str, make_tenant: Any
) -> None:
    # Given a funded org with a reservation held at t0
    tenant: Tenant = make_tenant(plan="starter")
    made = api.post(
        f"/v1/orgs/{tenant.org_id}/credits/grants", key=admin_key, json_body={"amount": 10, "note": "n"}
    )
    assert made.status == 201
    t0 = datetime.now(UTC)
    clocked = Clocked(t0)
    caller = Caller(key_id="key_t", user="u", role=Role.MEMBER, org_id=tenant.org_id, plan="starter")
    clocked.metering.reserve(caller, "color_analysis", Usage(), new_id("res"))
    assert clocked.metering.balance(tenant.org_id).held == 5_000
    # When the scheduler runs one hour later: the hold is not stale yet
    assert clocked.run_at(t0 + timedelta(hours=1))["released_reservations"] == 0
    # When it runs three hours later, twice: it is released, once
    assert clocked.run_at(t0 + timedelta(hours=3))["released_reservations"] == 1
    assert clocked.run_at(t0 + timedelta(hours=3, minutes=15))["released_reservations"] == 0
    account = clocked.metering.balance(tenant.org_id)
    assert (account.held, account.balance) == (0, 100_000 + STARTER_MONTHLY)
    assert_ledger_matches_balance(tenant.org_id)


def test_unpublished_alerts_wait_for_a_bus_that_accepts_them(
    api: Api, admin_key: str, make_tenant: Any, stack: CreatedStack
) -> None:
    # Given an org topped up with 10 credits, then spent down to 0.5 by a settled request
    queue = alerts_to_queue(stack)
    tenant: Tenant = make_tenant(plan="free")
    made = api.post(
        f"/v1/orgs/{tenant.org_id}/credits/grants", key=admin_key, json_body={"amount": 10, "note": "n"}
    )
    assert made.status == 201
    caller = Caller(key_id="key_t", user="u", role=Role.MEMBER, org_id=tenant.org_id, plan="free")
    usage = Usage(cost_micro_usd=63_334)  # chat: x1.5 -> 9.5001 credits
    reservation = services.metering().reserve(caller, "chat", usage, new_id("res"))
    services.metering().settle(tenant.org_id, reservation.reservation_id, usage)
    recorded = services.metering().alerts(tenant.org_id)
    assert recorded
    assert not any(a.published for a in recorded)
    # When the bus refuses everything
    refusing = RefusingPublisher()
    clocked = Clocked(datetime.now(UTC), publisher=refusing)
    assert clocked.run_at(datetime.now(UTC))["alerts_published"] == 0
    # Then they stay unpublished
    assert refusing.offered >= len(recorded)
    assert not any(a.published for a in services.metering().alerts(tenant.org_id))
    # When the scheduler runs with the real bus
    report = run_scheduler()
    # Then every alert is published, once
    assert report["alerts_published"] == len(recorded)
    assert all(a.published for a in services.metering().alerts(tenant.org_id))
    assert sorted(e["detail"]["alert_id"] for e in drain_queue(queue)) == sorted(a.alert_id for a in recorded)
    assert run_scheduler()["alerts_published"] == 0
    assert_ledger_matches_balance(tenant.org_id)


def test_one_failing_org_does_not_stop_the_others_and_the_run_fails(
    make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two starter orgs, one of which cannot be renewed
    good, bad = make_tenant("Good", plan="starter"), make_tenant("Bad", plan="starter")
    real = MeteringService.renew_subscription

    def renew(self: MeteringService, org_id: str, cycle_start: datetime, amount: int | None = None) -> Any:
        if org_id == bad.org_id:
            raise RuntimeError("boom")
        return real(self, org_id, cycle_start, amount)

    monkeypatch.setattr(MeteringService, "renew_subscription", renew)
    # When the scheduler runs
    with pytest.raises(FunctionFailed, match="1 orgs failed"):
        run_scheduler()
    # Then the good org was renewed all the same, and the bad one is retried next time
    assert balance(good.org_id) == STARTER_MONTHLY
    assert balance(bad.org_id) == 0
    monkeypatch.setattr(MeteringService, "renew_subscription", real)
    assert run_scheduler()["renewed"] == 1
    assert balance(bad.org_id) == STARTER_MONTHLY
