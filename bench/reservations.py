"""Concurrent reservations per second against a moto server, with their correctness (issue 8).

moto runs in server mode on 127.0.0.1 (as the local runtime runs it, with DynamoDB's
per-request atomicity restored by ``tollgate_local.moto_atomic``); every resource of
``template.yaml`` is made in it. Then threads call ``MeteringService.reserve`` through real
HTTP to moto, in two shapes:

- **one org**: every thread reserves for the same org, with credits for exactly K
  reservations and an hourly limit of N requests: exactly min(K, N) must succeed; each org's
  account item serializes its ledger moves, so this is the contended case;
- **one org per thread**: the same number of calls spread over as many orgs as threads, each
  with enough credits and room: all must succeed; orgs are independent, so this is how the
  gateway scales with tenants.

After each run the ledger is audited (sum of entries == balance, an unbroken sequence, exact
``balance_after``, no lot below zero) and the counters are checked against what succeeded.
moto is far slower than DynamoDB and answers from one process: the figures are for comparing
Tollgate with itself, not with DynamoDB's throughput.

    PYTHONPATH=layers/tollgate:local:. .venv/bin/python bench/reservations.py [--calls 400]

Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

for _name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from figures import Figures, add_json_argument  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from tollgate.aws.dynamodb import DynamoTable  # noqa: E402
from tollgate.aws.identity_store import DynamoIdentityStore  # noqa: E402
from tollgate.aws.metering_store import DynamoMeteringStore  # noqa: E402
from tollgate.clock import FixedClock  # noqa: E402
from tollgate.errors import InsufficientCredits, RateLimited  # noqa: E402
from tollgate.identity.models import Caller, Org, Role  # noqa: E402
from tollgate.metering.models import Usage  # noqa: E402
from tollgate.metering.pricing import FeatureRule, default_pricing  # noqa: E402
from tollgate.metering.service import MeteringService  # noqa: E402
from tollgate.plans import LimitSpec, load_plans  # noqa: E402
from tollgate_local.moto_atomic import make_dynamodb_requests_atomic  # noqa: E402
from tollgate_local.resources import REGION, create_stack  # noqa: E402
from tollgate_local.template import default_template  # noqa: E402

PRICE = 7_000  # credit units per reservation: a flat feature, so "credits for K" is exact
PROBE = FeatureRule.model_validate(
    {"name": "probe", "title": "Reservation bench", "rule": "flat", "credits": PRICE}
)
NOW = datetime(2025, 3, 10, 14, 20, tzinfo=UTC)  # fixed: the hourly window cannot roll mid-run


class _Session:
    def __init__(self, endpoint: str, threads: int) -> None:
        self.endpoint = endpoint
        self.threads = threads
        self._session = boto3.session.Session(region_name=REGION)

    def client(self, service: str, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint)
        kwargs.setdefault("region_name", REGION)
        kwargs.setdefault(
            "config",
            Config(max_pool_connections=self.threads * 2, retries={"mode": "standard", "max_attempts": 4}),
        )
        return self._session.client(service, **kwargs)


@dataclass
class Run:
    label: str
    calls: int
    seconds: float
    outcomes: Counter[str]
    raced: int
    correct: bool
    detail: str

    @property
    def per_second(self) -> float:
        return self.outcomes["reserved"] / self.seconds


def _fresh(endpoint: str, threads: int) -> tuple[MeteringService, DynamoMeteringStore, DynamoTable]:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))  # noqa: S310
    session = _Session(endpoint, threads)
    created = create_stack(default_template(), session)
    table = DynamoTable(created.names["TollgateTable"], session.client("dynamodb"))
    store = DynamoMeteringStore(table)
    return MeteringService(store, default_pricing(), load_plans(), FixedClock(NOW)), store, table


def _org(service: MeteringService, table: DynamoTable, org_id: str, credits_for: int, hourly: int) -> Caller:
    service.grant(org_id, credits_for * PRICE, operation_id="seed")
    DynamoIdentityStore(table).put_org(Org(org_id, org_id, "enterprise", NOW))
    service.set_limit_overrides(
        org_id, [LimitSpec(scope="org", metric="requests", window="hour", max=hourly)]
    )
    return Caller(key_id="key_bench", user="bench", role=Role.MEMBER, org_id=org_id, plan="enterprise")


def _audit(store: DynamoMeteringStore, org_id: str) -> int:
    """Sum of entries == balance, unbroken sequence, exact balance_after, no lot below zero."""
    account = store.load(org_id).account
    account.check_entries(store.all_entries(org_id))
    return account.balance


def _fire(calls: int, threads: int, work: Callable[[int], str]) -> tuple[Counter[str], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = Counter(pool.map(work, range(calls)))
    return outcomes, time.perf_counter() - started


def _reserve(service: MeteringService, caller: Caller, number: int) -> str:
    try:
        service.reserve(caller, PROBE, Usage(), f"req-{number:05d}")
    except RateLimited:
        return "rate_limited"
    except InsufficientCredits:
        return "insufficient_credits"
    return "reserved"


def one_org(endpoint: str, calls: int, threads: int, credits_for: int, hourly: int) -> Run:
    service, store, table = _fresh(endpoint, threads)
    caller = _org(service, table, "org_bench", credits_for, hourly)
    outcomes, seconds = _fire(calls, threads, lambda n: _reserve(service, caller, n))
    expected = min(credits_for, hourly, calls)
    balance = _audit(store, "org_bench")
    correct = outcomes["reserved"] == expected and balance == (credits_for - expected) * PRICE
    detail = f"{outcomes['reserved']} reserved, expected exactly {expected} (K={credits_for}, N={hourly})"
    return Run(f"one org, {threads} threads", calls, seconds, outcomes, service.raced, correct, detail)


def org_per_thread(endpoint: str, calls: int, threads: int) -> Run:
    service, store, table = _fresh(endpoint, threads)
    per_org = -(-calls // threads)
    callers = [_org(service, table, f"org_bench_{i}", per_org, per_org) for i in range(threads)]
    outcomes, seconds = _fire(calls, threads, lambda n: _reserve(service, callers[n % threads], n))
    balances = [_audit(store, caller.org_id or "") for caller in callers]
    reserved_per_org = Counter(n % threads for n in range(calls))
    correct = outcomes["reserved"] == calls and all(
        balance == (per_org - reserved_per_org[i]) * PRICE for i, balance in enumerate(balances)
    )
    detail = f"{outcomes['reserved']} of {calls} reserved over {threads} orgs"
    return Run(
        f"one org per thread, {threads} orgs", calls, seconds, outcomes, service.raced, correct, detail
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=400, help="reservations per run")
    parser.add_argument("--threads", type=int, default=8)
    add_json_argument(parser)
    args = parser.parse_args(argv)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    undo = make_dynamodb_requests_atomic()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        runs = [
            one_org(
                endpoint,
                args.calls,
                args.threads,
                credits_for=args.calls * 3 // 8,
                hourly=args.calls * 2 // 3,
            ),
            one_org(
                endpoint,
                args.calls,
                args.threads,
                credits_for=args.calls * 4 // 5,
                hourly=args.calls * 3 // 10,
            ),
            org_per_thread(endpoint, args.calls, args.threads),
        ]
    finally:
        server.stop()
        undo()

    figures = Figures()
    print(f"reserve() through a moto server on 127.0.0.1; Python {sys.version.split()[0]}")
    for run in runs:
        verdict = "correct" if run.correct else "WRONG"
        print(
            f"  {run.label:<34} {run.calls} calls in {run.seconds:6.2f} s: "
            f"{run.calls / run.seconds:6.0f} calls/s, {run.per_second:6.0f} reservations/s; "
            f"{dict(run.outcomes)}; recomputed after a lost race: {run.raced}; {run.detail}: {verdict}"
        )
        figures.add(
            "concurrent reservations (moto server)",
            f"{run.label}: {run.detail}",
            f"{run.per_second:.0f} reservations/s ({run.calls / run.seconds:.0f} calls/s)",
            "exactly the bound, ledger adds up",
            run.correct,
        )
    figures.write(args.json)
    return 0 if all(run.correct for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
