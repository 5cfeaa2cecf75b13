"""THE concurrency test: many threads reserving against one org, through a moto *server*.

Given an org whose credits cover exactly K reservations and whose hourly request limit is N,
when 8 threads fire 400 reservations at it, exactly min(K, N) succeed, no balance or counter
ever passes its bound (a monitor thread samples them throughout), and afterwards the ledger
entries sum to the balance and no lot is negative. Run with K < N, K > N, and with settle and
release mixed in.

About the harness: moto's server does not make each DynamoDB request atomic as DynamoDB
does; ``tollgate_local.moto_atomic`` restores that contract (see there), and the local runtime
applies the same patch.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tollgate.aws.dynamodb import DynamoTable
from tollgate.aws.identity_store import DynamoIdentityStore
from tollgate.aws.metering_store import DynamoMeteringStore, account_from_item, account_key, counter_key
from tollgate.clock import FixedClock
from tollgate.errors import InsufficientCredits, RateLimited
from tollgate.identity.models import Caller, Org, Role
from tollgate.metering.models import ReservationStatus, Usage
from tollgate.metering.pricing import FeatureRule, default_pricing
from tollgate.metering.service import MeteringService
from tollgate.plans import LimitSpec, load_plans
from tollgate_local.moto_atomic import make_dynamodb_requests_atomic
from tollgate_local.resources import REGION, create_stack
from tollgate_local.template import default_template

pytestmark = pytest.mark.slow

THREADS = 8
RESERVATIONS = 400
PRICE = 7_000  # credit units per reservation (0.7 credit): a flat feature, so K is exact
PROBE = FeatureRule(name="probe", title="Concurrency probe", rule="flat", credits=PRICE)
NOW = datetime(2025, 3, 10, 14, 20, tzinfo=UTC)  # fixed: the hourly window cannot roll mid-test


class _Session:
    """A boto3 session whose clients all talk to the moto server."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )

    def client(self, service: str, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint)
        kwargs.setdefault("region_name", REGION)
        kwargs.setdefault(
            "config",
            Config(max_pool_connections=THREADS * 2, retries={"mode": "standard", "max_attempts": 4}),
        )
        return self._session.client(service, **kwargs)


@pytest.fixture
def atomic_moto() -> Iterator[None]:
    """DynamoDB's per-request atomicity, which the in-process moto server lacks (see its module)."""
    undo = make_dynamodb_requests_atomic()
    yield
    undo()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Bench:
    """One org on a fresh table of the moto server, and the service that meters it."""

    service: MeteringService
    store: DynamoMeteringStore
    table: DynamoTable
    org_id: str
    caller: Caller


@pytest.fixture
def bench(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bench:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    session = _Session(moto_endpoint)
    # A fresh moto per test (moto copies a whole table on every transaction, so size matters).
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))  # noqa: S310
    created = create_stack(default_template(), session)
    table = DynamoTable(created.names["TollgateTable"], session.client("dynamodb"))
    store = DynamoMeteringStore(table)
    service = MeteringService(store, default_pricing(), load_plans(), FixedClock(NOW))
    org_id = "org_concurrency"
    caller = Caller(key_id="key_1", user="load-tester", role=Role.MEMBER, org_id=org_id, plan="free")
    return Bench(service, store, table, org_id, caller)


@dataclass
class Observed:
    """What the monitor saw while the threads ran."""

    samples: int = 0
    max_used: int = 0
    min_balance: int | None = None
    min_lot: int | None = None
    violations: list[str] = field(default_factory=list)


def _monitor(bench: Bench, counter: str, limit: int, stop: threading.Event, seen: Observed) -> None:
    """Sample the account and the hourly counter until told to stop."""
    while not stop.is_set():
        account = account_from_item(bench.org_id, bench.table.get(**_pk_sk(account_key(bench.org_id))))
        used_item = bench.table.get(**_pk_sk(counter_key(bench.org_id, counter)))
        used = int(used_item["used"]) if used_item else 0
        seen.samples += 1
        seen.max_used = max(seen.max_used, used)
        lowest_lot = min((lot.remaining for lot in account.lots), default=0)
        seen.min_balance = (
            account.balance if seen.min_balance is None else min(seen.min_balance, account.balance)
        )
        seen.min_lot = lowest_lot if seen.min_lot is None else min(seen.min_lot, lowest_lot)
        if used > limit:
            seen.violations.append(f"counter {used} > {limit}")
        if account.balance < 0 or lowest_lot < 0:
            seen.violations.append(f"balance {account.balance}, lowest lot {lowest_lot}")
        try:
            account.check()
        except AssertionError as broken:
            seen.violations.append(str(broken))
        time.sleep(0.01)


def _pk_sk(key: dict[str, Any]) -> dict[str, str]:
    return {"pk": str(key["pk"]), "sk": str(key["sk"])}


def _prepare(bench: Bench, credits_for: int, hourly_limit: int) -> str:
    """Credits for exactly ``credits_for`` reservations; an hourly request limit of ``hourly_limit``."""
    bench.service.grant(bench.org_id, credits_for * PRICE, operation_id="seed")
    DynamoIdentityStore(bench.table).put_org(Org(bench.org_id, "Concurrency", "free", NOW))
    bench.service.set_limit_overrides(
        bench.org_id, [LimitSpec(scope="org", metric="requests", window="hour", max=hourly_limit)]
    )
    return _hourly_counter(bench)


def _hourly_counter(bench: Bench) -> str:
    return f"C#h{NOW:%Y%m%d%H}#requests#org#*#*#{bench.org_id}"


def _fire(
    bench: Bench, work: Callable[[int], str], hourly_limit: int
) -> tuple[Counter[str], float, Observed]:
    """Run ``work`` for every reservation number on THREADS threads, with the monitor on."""
    seen = Observed()
    stop = threading.Event()
    monitor = threading.Thread(
        target=_monitor, args=(bench, _hourly_counter(bench), hourly_limit, stop, seen)
    )
    monitor.start()
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            outcomes = Counter(pool.map(work, range(RESERVATIONS)))
    finally:
        elapsed = time.perf_counter() - started
        stop.set()
        monitor.join()
    return outcomes, elapsed, seen


def _reserve(bench: Bench, number: int) -> str:
    try:
        bench.service.reserve(bench.caller, PROBE, Usage(), f"req-{number:04d}")
    except RateLimited:
        return "rate_limited"
    except InsufficientCredits:
        return "insufficient_credits"
    return "reserved"


def _assert_ledger_consistent(bench: Bench) -> tuple[int, int]:
    """Sum of entries == balance, an unbroken sequence, exact balance_after, no lot below zero."""
    account = bench.store.load(bench.org_id).account
    account.check_entries(bench.store.all_entries(bench.org_id))
    used = bench.store.counters(bench.org_id, [_hourly_counter(bench)]).get(_hourly_counter(bench), 0)
    return account.balance, used


def _report(name: str, outcomes: Counter[str], elapsed: float, bench: Bench, seen: Observed) -> None:
    print(
        f"\n[{name}] {RESERVATIONS} calls on {THREADS} threads in {elapsed:.2f}s: "
        f"{RESERVATIONS / elapsed:.0f} calls/s, "
        f"{outcomes['reserved'] / elapsed:.0f} successful reservations/s; "
        f"outcomes {dict(outcomes)}; commits recomputed after a lost race: {bench.service.raced}; "
        f"monitor samples: {seen.samples}"
    )


@pytest.mark.parametrize(
    ("credits_for", "hourly_limit"),
    [pytest.param(150, 260, id="credits-run-out-first"), pytest.param(320, 120, id="limit-reached-first")],
)
def test_exactly_min_k_n_reservations_succeed(
    atomic_moto: None, bench: Bench, monkeypatch: pytest.MonkeyPatch, credits_for: int, hourly_limit: int
) -> None:
    # Given an org with credits for exactly K reservations and an hourly limit of N requests
    _prepare(bench, credits_for, hourly_limit)

    # When 8 threads fire 400 reservations at it
    outcomes, elapsed, seen = _fire(bench, lambda n: _reserve(bench, n), hourly_limit)
    _report(f"K={credits_for} N={hourly_limit}", outcomes, elapsed, bench, seen)

    # Then exactly min(K, N) succeed, and every refusal names the bound that was really reached
    expected = min(credits_for, hourly_limit)
    assert outcomes["reserved"] == expected
    refused_as = "insufficient_credits" if credits_for < hourly_limit else "rate_limited"
    assert outcomes[refused_as] == RESERVATIONS - expected
    # And no balance or counter ever passed its bound, while it ran or afterwards
    assert seen.samples > 0
    assert not seen.violations, seen.violations[:5]
    assert seen.max_used <= hourly_limit
    balance, used = _assert_ledger_consistent(bench)
    assert used == expected
    assert balance == (credits_for - expected) * PRICE


def test_settle_and_release_mixed_in_keep_every_bound(
    atomic_moto: None, bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given credits for 200 reservations and an hourly limit of 90 requests
    credits_for, hourly_limit = 200, 90
    _prepare(bench, credits_for, hourly_limit)
    finished: dict[str, list[str]] = {"settled": [], "released": []}
    lock = threading.Lock()

    def reserve_then_finish(number: int) -> str:
        # When each thread settles or releases, at random, what it reserved while others reserve
        outcome = _reserve(bench, number)
        if outcome != "reserved":
            return outcome
        reservation_id = f"req-{number:04d}"
        if random.random() < 0.5:
            settled = bench.service.settle(bench.org_id, reservation_id, Usage())
            assert settled.charged_credits == PRICE
            with lock:
                finished["settled"].append(reservation_id)
        else:
            released = bench.service.release(bench.org_id, reservation_id)
            assert released.released_credits == PRICE
            with lock:
                finished["released"].append(reservation_id)
        return outcome

    outcomes, elapsed, seen = _fire(bench, reserve_then_finish, hourly_limit)
    _report("reserve + settle/release", outcomes, elapsed, bench, seen)

    # Then no bound was ever passed
    assert not seen.violations, seen.violations[:5]
    assert seen.max_used <= hourly_limit
    settled, released = len(finished["settled"]), len(finished["released"])
    assert settled + released == outcomes["reserved"]
    # And a released request gives its place and its credits back: only settled ones stay counted
    # and paid, and more requests got through than the limit alone would have let in
    assert settled <= min(credits_for, hourly_limit)
    assert outcomes["reserved"] > hourly_limit
    balance, used = _assert_ledger_consistent(bench)
    assert used == settled
    assert balance == (credits_for - settled) * PRICE
    for reservation_id in finished["settled"][:5] + finished["released"][:5]:
        status = bench.service.reservation(bench.org_id, reservation_id).status
        assert status in (ReservationStatus.SETTLED, ReservationStatus.RELEASED)
