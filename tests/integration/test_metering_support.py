"""Shared pieces of the metering integration tests (no tests here): a service on the moto table with a clock
the test moves, and an audit of every org's ledger after each test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from tollgate import services
from tollgate.aws.identity_store import DynamoIdentityStore
from tollgate.aws.metering_store import DynamoMeteringStore
from tollgate.clock import FixedClock
from tollgate.identity.models import Caller, Org, Role
from tollgate.metering.pricing import default_pricing
from tollgate.metering.service import MeteringService
from tollgate.plans import load_plans
from tollgate_local.resources import CreatedStack

START = datetime(2025, 3, 10, 14, 20, tzinfo=UTC)


@dataclass
class Metering:
    service: MeteringService
    store: DynamoMeteringStore
    clock: FixedClock

    def caller(self, org_id: str, user: str = "ann", plan: str = "starter") -> Caller:
        return Caller(key_id="key_test", user=user, role=Role.MEMBER, org_id=org_id, plan=plan)

    def create_org(self, org_id: str, plan: str = "starter") -> None:
        """The org's identity item (limit overrides live on it)."""
        DynamoIdentityStore(services.table()).put_org(Org(org_id, org_id, plan, START))

    def counter(self, org_id: str, key: str) -> int:
        return self.store.counters(org_id, [key]).get(key, 0)

    def audit(self, org_id: str) -> int:
        """Sum of entries == balance, unbroken sequence, exact balance_after, no lot below zero."""
        account = self.store.load(org_id).account
        account.check_entries(self.store.all_entries(org_id))
        return account.balance


def metering_on_stack(stack: CreatedStack) -> Iterator[Metering]:
    """The body of each module's ``metering`` fixture (a fixture imported across modules would
    shadow names); needs the ``stack`` fixture to be active."""
    store = DynamoMeteringStore(services.table())
    clock = FixedClock(START)
    built = Metering(MeteringService(store, default_pricing(), load_plans(), clock), store, clock)
    yield built
    # After every test: every org's ledger adds up to its balance, and no lot is below zero.
    table = services.table()
    accounts = table.client.scan(
        TableName=table.name, FilterExpression="sk = :sk", ExpressionAttributeValues={":sk": {"S": "ACCOUNT"}}
    )["Items"]
    for raw in accounts:
        built.audit(raw["pk"]["S"].removeprefix("ACCT#"))
