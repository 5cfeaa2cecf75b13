"""Faults (S4, S7, S11) through the template's gateway, functions and queue (moto, in process).

AWS faults are injected into the process's boto3 clients (``tollgate.aws.clients``) with
botocore's ``before-call`` hook: the hook answers in AWS's place, so the adapter sees exactly
the ``ClientError`` AWS would raise once botocore's own retries have given up (a persistent
throttle, a conflict, a 5xx). Provider faults come from a fake ``httpx`` transport.

Each test ends in a clear problem (``503`` with ``Retry-After`` for AWS, ``502``/``504``
``provider_error`` for a provider) or a successful retry, and then audits the ledger: the sum
of the entries is the balance (and every ``balance_after`` the running sum: the module's
``metering`` fixture, for every org), nothing is left held (or, where the design leaves a hold
to the scheduler's stale-hold sweep, the sweep releases it), and the customer is charged at
most once.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import httpx
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from tests.conftest import Api, ApiResponse, Tenant
from tests.integration.test_credits_api import assert_problem, balance_of, grant
from tests.integration.test_images_api import (
    SMALL,
    SMALL_PRICE,
    asset_objects,
    invoke_worker,
    job_of,
    queue_count,
    receive_raw,
    run_worker,
    worker_poller,
)
from tests.integration.test_metering_support import Metering, metering_on_stack
from tests.unit.test_providers_fakes import ScriptedTransport
from tests.unit.test_providers_openai import CHAT_OK
from tollgate import services
from tollgate.aws.clients import client
from tollgate.aws.metering_store import DynamoMeteringStore
from tollgate.credits.amounts import credits_of_units
from tollgate.metering.models import EntryKind, LedgerEntry
from tollgate.providers.catalog import ProviderCatalog, build_providers
from tollgate.providers.keys import StaticProviderKeys
from tollgate.settings import get_settings
from tollgate_local.resources import REGION, CreatedStack
from tollgate_local.sqs import sqs_event

CHAT = "/v1/chat/completions"
OPENAI_CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}
MOCK_CHAT = {"model": "mock/chat", "messages": [{"role": "user", "content": "Hello there"}]}
GRANTED = Decimal(100)


# -- injecting faults ------------------------------------------------------------------------------


class WorkerDied(BaseException):
    """The Lambda process ended (timeout, out of memory): nothing after it runs, not even the
    handler's ``except Exception``."""


@dataclass
class Fault:
    """One operation answered with an AWS error (or a death) while armed."""

    operation: str
    code: str
    status: int = 400
    times: int | None = None  # None: every call while armed
    when: Callable[[bytes], bool] = lambda body: True
    die: bool = False
    armed: bool = True
    hits: int = 0

    def __call__(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        body = params.get("body") or b""
        raw = body if isinstance(body, bytes) else str(body).encode()
        target = raw + str(params.get("url", "")).encode()
        if not self.armed or (self.times is not None and self.hits >= self.times) or not self.when(target):
            return None
        self.hits += 1
        if self.die:
            raise WorkerDied(self.operation)
        parsed: dict[str, Any] = {
            "Error": {"Code": self.code, "Message": f"injected {self.code}"},
            "ResponseMetadata": {"HTTPStatusCode": self.status, "HTTPHeaders": {}},
        }
        if self.code == "TransactionCanceledException":
            count = len(json.loads(raw).get("TransactItems") or [])
            parsed["CancellationReasons"] = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (
                count - 1
            )
        return AWSResponse("https://fault.invalid/", self.status, {}, None), parsed


@dataclass
class LostAnswer:
    """AWS carried the call out, then the answer never arrived (a read timeout): raised after
    the call, when it succeeded."""

    times: int | None = None
    armed: bool = True
    skip: int = 0  # successful calls let through first
    hits: int = 0

    def __call__(self, http_response: AWSResponse, **_: Any) -> None:
        if (
            not self.armed
            or (self.times is not None and self.hits >= self.times)
            or http_response.status_code >= 300
        ):
            return
        if self.skip:
            self.skip -= 1
            return
        self.hits += 1
        raise ReadTimeoutError(endpoint_url="https://dynamodb.invalid/")


@dataclass
class Faults:
    registered: list[tuple[str, str, Fault | LostAnswer]] = field(default_factory=list)

    def inject(self, service: str, operation: str, code: str, **options: Any) -> Fault:
        fault = Fault(operation, code, **options)
        event = f"before-call.{service}.{operation}"
        client(service).meta.events.register(event, fault)
        self.registered.append((service, event, fault))
        return fault

    def lose_answer(self, service: str, operation: str, **options: Any) -> LostAnswer:
        lost = LostAnswer(**options)
        event = f"after-call.{service}.{operation}"
        client(service).meta.events.register(event, lost)
        self.registered.append((service, event, lost))
        return lost

    def clear(self) -> None:
        for service, event, fault in self.registered:
            client(service).meta.events.unregister(event, fault)
        self.registered.clear()


@pytest.fixture
def faults(stack: CreatedStack) -> Iterator[Faults]:
    injected = Faults()
    yield injected
    injected.clear()


@pytest.fixture(autouse=True)
def metering(stack: CreatedStack) -> Iterator[Metering]:
    """After every test, every org's ledger adds up (balance = sum of entries, no lot below 0)."""
    yield from metering_on_stack(stack)


@pytest.fixture
def org(api: Api, admin_key: str, make_tenant: Any) -> Tenant:
    """An org with 100 credits whose keys the gateway has already authorized (its authorizer
    cache holds them), so that a fault meets the function, not the authorizer."""
    tenant: Tenant = make_tenant("Faulty")
    assert grant(api, admin_key, tenant.org_id, GRANTED).status == 201
    for key in (tenant.owner_key, tenant.member_key, admin_key):
        assert api.get("/v1/me", key=key).status == 200
    return tenant


def with_openai(monkeypatch: pytest.MonkeyPatch, transport: ScriptedTransport) -> None:
    """OpenAI configured, its HTTP answered by ``transport`` (no sleeps between retries)."""

    @functools.cache
    def catalog() -> ProviderCatalog:
        return build_providers(
            get_settings(),
            StaticProviderKeys({"openai": "sk-test"}),
            client=transport.client(),
            sleep=lambda _: None,
        )

    monkeypatch.setattr(services, "providers", catalog)
    services.generation.cache_clear()


def answered_ok(then: Callable[[], None]) -> Callable[[httpx.Request], httpx.Response]:
    """A provider step that answers 200 and, as it does, runs ``then`` (arms a fault: the
    fault starts after the provider was paid)."""

    def step(request: httpx.Request) -> httpx.Response:
        then()
        return httpx.Response(200, json=CHAT_OK)

    return step


# -- the audit -------------------------------------------------------------------------------------


def entries_of(org_id: str) -> list[LedgerEntry]:
    return list(DynamoMeteringStore(services.table()).all_entries(org_id))


def captures(org_id: str) -> list[LedgerEntry]:
    return [entry for entry in entries_of(org_id) if entry.kind is EntryKind.CAPTURE]


def assert_nothing_held(org_id: str) -> None:
    store = DynamoMeteringStore(services.table())
    assert store.held_reservations(org_id, datetime.now(UTC) + timedelta(days=1)) == []
    assert sum(lot.held for lot in store.load(org_id).account.lots) == 0


def assert_aws_unavailable(response: ApiResponse) -> None:
    assert_problem(response, 503, "service_unavailable")
    assert int(response.header("Retry-After") or "0") >= 1


def sweep_stale_holds(org_id: str) -> int:
    """The scheduler's stale-hold sweep as it runs once ``STALE_RESERVATION_SECONDS`` have passed."""
    return len(
        services.metering()
        .release_stale(org_id, older_than=datetime.now(UTC) + timedelta(seconds=1))
        .released
    )


def charged(response: ApiResponse) -> Decimal:
    return Decimal(response.header("X-Credits-Charged") or "")


# -- DynamoDB throttling ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_a_throttled_read_is_503_with_retry_after_and_the_retry_answers(
    api: Api, org: Tenant, faults: Faults, code: str
) -> None:
    # Given every read of the org's account throttled (after botocore's own retries)
    for operation in ("GetItem", "Query", "BatchGetItem"):
        faults.inject("dynamodb", operation, code, when=lambda body: b"ACCT#" in body)
    # When a member reads its balance
    refused = api.get("/v1/credits/balance", key=org.member_key)
    # Then it is a 503 problem with Retry-After
    assert_aws_unavailable(refused)
    # And once DynamoDB answers again, the retry does
    faults.clear()
    retried = api.get("/v1/credits/balance", key=org.member_key)
    assert retried.status == 200, retried.body
    assert Decimal(str(retried.json()["balance"])) == GRANTED


def test_a_chat_whose_reservation_is_throttled_is_503_and_holds_nothing(
    api: Api, admin_key: str, org: Tenant, faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the provider would answer, and DynamoDB throttles every write of the ledger
    transport = ScriptedTransport(httpx.Response(200, json=CHAT_OK))
    with_openai(monkeypatch, transport)
    throttle = faults.inject("dynamodb", "TransactWriteItems", "ProvisionedThroughputExceededException")
    # When a member chats
    refused = api.post(CHAT, key=org.member_key, json_body=OPENAI_CHAT)
    # Then it is 503, the provider was never called, nothing is held or charged
    assert_aws_unavailable(refused)
    assert throttle.hits >= 1
    assert transport.calls == 0
    assert_nothing_held(org.org_id)
    assert captures(org.org_id) == []
    # And the client's retry is answered and charged once
    faults.clear()
    retried = api.post(CHAT, key=org.member_key, json_body=OPENAI_CHAT)
    assert retried.status == 200, retried.body
    assert balance_of(api, admin_key, org.org_id) == GRANTED - charged(retried)
    assert len(captures(org.org_id)) == 1
    assert_nothing_held(org.org_id)


def test_a_settlement_throttled_for_good_is_503_charges_nothing_and_the_sweep_releases_its_hold(
    api: Api, admin_key: str, org: Tenant, faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a provider that answers, after which DynamoDB throttles every ledger write
    throttle = faults.inject(
        "dynamodb", "TransactWriteItems", "ProvisionedThroughputExceededException", armed=False
    )
    transport = ScriptedTransport(answered_ok(lambda: setattr(throttle, "armed", True)))
    with_openai(monkeypatch, transport)
    # When a member chats
    refused = api.post(CHAT, key=org.member_key, json_body=OPENAI_CHAT)
    # Then it is 503 (the answer can be neither recorded nor charged) and nothing was captured
    assert_aws_unavailable(refused)
    assert transport.calls == 1
    assert throttle.hits == 3  # the settlement, the release tried at once, the failed record alone
    assert captures(org.org_id) == []
    request_id = refused.header("X-Request-Id")
    assert_problem(api.get(f"/v1/requests/{request_id}", key=org.member_key), 404, "not_found")
    # And its hold, which nothing could release while DynamoDB refused writes, is released by
    # the scheduler's stale-hold sweep: the balance is whole again
    faults.clear()
    assert sweep_stale_holds(org.org_id) == 1
    assert_nothing_held(org.org_id)
    assert balance_of(api, admin_key, org.org_id) == GRANTED
    assert [e.kind for e in entries_of(org.org_id)] == [EntryKind.GRANT, EntryKind.HOLD, EntryKind.RELEASE]
    # And the client's retry is charged once
    transport.steps.append(httpx.Response(200, json=CHAT_OK))
    retried = api.post(CHAT, key=org.member_key, json_body=OPENAI_CHAT)
    assert retried.status == 200, retried.body
    assert balance_of(api, admin_key, org.org_id) == GRANTED - charged(retried)
    assert len(captures(org.org_id)) == 1


def test_a_settlement_throttled_once_is_503_and_its_hold_is_released_at_once(
    api: Api, admin_key: str, org: Tenant, faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a provider that answers, and then one throttled ledger write (the settlement)
    throttle = faults.inject("dynamodb", "TransactWriteItems", "ThrottlingException", times=1, armed=False)
    transport = ScriptedTransport(answered_ok(lambda: setattr(throttle, "armed", True)))
    with_openai(monkeypatch, transport)
    # When a member chats
    refused = api.post(CHAT, key=org.member_key, json_body=OPENAI_CHAT)
    # Then it is 503, and the hold went back with the failure recorded: no sweep needed
    assert_aws_unavailable(refused)
    assert throttle.hits == 1
    assert_nothing_held(org.org_id)
    assert captures(org.org_id) == []
    assert balance_of(api, admin_key, org.org_id) == GRANTED
    record = api.get(f"/v1/requests/{refused.header('X-Request-Id')}", key=org.member_key)
    assert record.status == 200, record.body
    assert record.json()["status"] == "failed"


def test_a_settlement_whose_answer_is_lost_after_it_committed_answers_and_charges_once(
    api: Api, admin_key: str, org: Tenant, faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a provider that answers, and then DynamoDB commits the settlement but the connection
    # drops before its answer arrives (botocore's retries exhausted)
    lost = faults.lose_answer("dynamodb", "TransactWriteItems", times=1, armed=False)
    transport = ScriptedTransport(answered_ok(lambda: setattr(lost, "armed", True)))
    with_openai(monkeypatch, transport)
    # When a member chats
    response = api.post(CHAT, key=org.member_key, json_body=OPENAI_CHAT)
    # Then the settlement is read back: the answer stands, charged exactly once, recorded
    assert response.status == 200, response.body
    assert lost.hits == 1
    (capture,) = captures(org.org_id)
    assert credits_of_units(int(capture.details["charged"])) == charged(response)
    assert balance_of(api, admin_key, org.org_id) == GRANTED - charged(response)
    record = api.get(f"/v1/requests/{response.header('X-Request-Id')}", key=org.member_key)
    assert record.json()["status"] == "completed"
    assert_nothing_held(org.org_id)


# -- transaction conflicts -------------------------------------------------------------------------


def test_a_settlement_cancelled_for_a_transaction_conflict_is_retried_and_charged_once(
    api: Api, admin_key: str, org: Tenant, faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a provider that answers, and then DynamoDB cancels the next two ledger transactions
    # (TransactionConflict: another transaction touched the same items)
    conflict = faults.inject(
        "dynamodb", "TransactWriteItems", "TransactionCanceledException", times=2, armed=False
    )
    transport = ScriptedTransport(answered_ok(lambda: setattr(conflict, "armed", True)))
    with_openai(monkeypatch, transport)
    # When a member chats
    response = api.post(CHAT, key=org.member_key, json_body=OPENAI_CHAT)
    # Then the settlement was recomputed and committed: answered, charged exactly once
    assert response.status == 200, response.body
    assert conflict.hits == 2
    (capture,) = captures(org.org_id)
    assert capture.reference == response.header("X-Request-Id")
    assert balance_of(api, admin_key, org.org_id) == GRANTED - charged(response)
    assert credits_of_units(int(capture.details["charged"])) == charged(response)
    assert_nothing_held(org.org_id)


# -- S3 --------------------------------------------------------------------------------------------


def test_a_cache_write_that_fails_still_answers_and_charges_once(
    api: Api, admin_key: str, org: Tenant, faults: Faults, stack: CreatedStack
) -> None:
    # Given S3 failing every write to the response cache
    bucket = stack.names["CacheBucket"].encode()
    failing = faults.inject(
        "s3", "PutObject", "InternalError", status=500, when=lambda target: bucket in target
    )
    # When a member sends a cacheable chat
    body = {**MOCK_CHAT, "temperature": 0}
    response = api.post(CHAT, key=org.member_key, json_body=body)
    # Then the answer comes, charged once; the cache simply holds nothing
    assert response.status == 200, response.body
    assert failing.hits == 1
    assert response.header("X-Cache") == "MISS"
    assert balance_of(api, admin_key, org.org_id) == GRANTED - charged(response)
    assert len(captures(org.org_id)) == 1
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=stack.names["CacheBucket"])
    assert listed.get("KeyCount", 0) == 0
    assert_nothing_held(org.org_id)


def test_an_asset_write_that_fails_in_the_worker_is_retried_and_charged_once(
    api: Api, admin_key: str, org: Tenant, faults: Faults, stack: CreatedStack
) -> None:
    # Given a queued job, and S3 refusing the first write of its asset
    job = api.post("/v1/images", key=org.member_key, json_body={**SMALL, "prompt": "A harbour"}).json()
    failing = faults.inject("s3", "PutObject", "SlowDown", status=503, times=1)
    # When the worker runs the queue (the failed delivery comes back)
    assert run_worker(stack) == 2
    # Then the second delivery made it: one asset, completed, charged once
    assert failing.hits == 1
    done = job_of(api, org.member_key, job["id"])
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert asset_objects(stack, org.org_id) == [f"assets/{org.org_id}/{job['id']}/0.png"]
    assert balance_of(api, admin_key, org.org_id) == GRANTED - SMALL_PRICE
    assert len(captures(org.org_id)) == 1
    assert_nothing_held(org.org_id)


def test_an_asset_write_that_fails_inline_is_503_and_releases_the_hold(
    api: Api, admin_key: str, org: Tenant, faults: Faults, stack: CreatedStack
) -> None:
    # Given S3 refusing every asset write
    faults.inject("s3", "PutObject", "InternalError", status=500)
    # When a member asks for an image inline
    body = {"model": "mock/image", "size": "256x256", "prompt": "A quay"}
    refused = api.post("/v1/images/generations", key=org.member_key, json_body=body)
    # Then it is 503, and its reservation went back: nothing held, nothing charged
    assert_aws_unavailable(refused)
    assert_nothing_held(org.org_id)
    assert captures(org.org_id) == []
    assert balance_of(api, admin_key, org.org_id) == GRANTED
    assert asset_objects(stack, org.org_id) == []


# -- SQS -------------------------------------------------------------------------------------------


def test_a_job_whose_message_cannot_be_queued_is_503_and_releases_its_credits(
    api: Api, admin_key: str, org: Tenant, faults: Faults, stack: CreatedStack
) -> None:
    # Given SQS refusing every send
    failing = faults.inject("sqs", "SendMessageBatch", "ServiceUnavailable", status=503)
    # When a member submits a job
    refused = api.post("/v1/images", key=org.member_key, json_body={**SMALL, "prompt": "A mast"})
    # Then it is 503 with Retry-After; the job failed with its credits released
    assert_aws_unavailable(refused)
    assert failing.hits >= 1
    assert queue_count(stack, "ImageJobsQueue") == 0
    assert_nothing_held(org.org_id)
    assert captures(org.org_id) == []
    assert balance_of(api, admin_key, org.org_id) == GRANTED
    # And the client's retry is queued, made and charged once
    faults.clear()
    accepted = api.post("/v1/images", key=org.member_key, json_body={**SMALL, "prompt": "A mast"})
    assert accepted.status == 202, accepted.body
    assert run_worker(stack) == 1
    assert job_of(api, org.member_key, accepted.json()["id"])["status"] == "completed"
    assert balance_of(api, admin_key, org.org_id) == GRANTED - SMALL_PRICE
    assert len(captures(org.org_id)) == 1


# -- providers -------------------------------------------------------------------------------------


def test_a_provider_that_times_out_is_504_and_charges_nothing(
    api: Api, admin_key: str, org: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given OpenAI timing out on every attempt
    transport = ScriptedTransport(*[httpx.ReadTimeout("read timed out") for _ in range(6)])
    with_openai(monkeypatch, transport)
    # When a member chats
    refused = api.post(CHAT, key=org.member_key, json_body=OPENAI_CHAT)
    # Then it is 504 provider_error after the provider's retries, and nothing is held or charged
    assert_problem(refused, 504, "provider_error")
    assert transport.calls >= 2
    assert_nothing_held(org.org_id)
    assert captures(org.org_id) == []
    assert balance_of(api, admin_key, org.org_id) == GRANTED


def test_a_provider_timeout_then_an_answer_is_charged_once(
    api: Api, admin_key: str, org: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = ScriptedTransport(httpx.ReadTimeout("read timed out"), httpx.Response(200, json=CHAT_OK))
    with_openai(monkeypatch, transport)
    response = api.post(CHAT, key=org.member_key, json_body=OPENAI_CHAT)
    assert response.status == 200, response.body
    assert transport.calls == 2
    assert len(captures(org.org_id)) == 1
    assert balance_of(api, admin_key, org.org_id) == GRANTED - charged(response)
    assert_nothing_held(org.org_id)


# -- a worker that dies ----------------------------------------------------------------------------


def test_a_worker_that_dies_after_writing_the_asset_is_finished_once_by_the_redelivery(
    api: Api, admin_key: str, org: Tenant, faults: Faults, stack: CreatedStack
) -> None:
    # Given a queued job, and a worker process that dies as it settles (the asset is written)
    job = api.post("/v1/images", key=org.member_key, json_body={**SMALL, "prompt": "A buoy"}).json()
    death = faults.inject("dynamodb", "TransactWriteItems", "-", die=True, times=1)
    (message,) = receive_raw(stack)
    with pytest.raises(WorkerDied):
        invoke_worker(sqs_event([message], worker_poller(stack).source.queue_arn))
    # Then the asset is in S3, the job still processing, its credits held and nothing charged
    assert death.hits == 1
    assert asset_objects(stack, org.org_id) == [f"assets/{org.org_id}/{job['id']}/0.png"]
    assert job_of(api, org.member_key, job["id"])["status"] == "processing"
    assert captures(org.org_id) == []
    # When its lease runs out (SQS redelivers after the visibility timeout, which is longer than
    # any lease) and the message comes back
    table = services.table()
    expired = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp() * 1000)
    table.client.update_item(
        TableName=table.name,
        Key={"pk": {"S": f"ORG#{org.org_id}#IMG#{job['id']}"}, "sk": {"S": "JOB"}},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"N": str(expired)}},
    )
    assert run_worker(stack) == 1
    # Then the redelivery used the stored asset and completed the job: one asset, one charge
    done = job_of(api, org.member_key, job["id"])
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert asset_objects(stack, org.org_id) == [f"assets/{org.org_id}/{job['id']}/0.png"]
    assert len(captures(org.org_id)) == 1
    assert balance_of(api, admin_key, org.org_id) == GRANTED - SMALL_PRICE
    assert_nothing_held(org.org_id)
    assert queue_count(stack, "ImageJobsQueue") == 0


def test_an_inline_image_whose_settlement_answer_is_lost_is_answered_and_charged_once(
    api: Api, admin_key: str, org: Tenant, faults: Faults
) -> None:
    # Given the settlement of an inline image committed, its answer lost (the reservation is
    # the first ledger transaction, the settlement the second)
    lost = faults.lose_answer("dynamodb", "TransactWriteItems", times=1, skip=1)
    body = {"model": "mock/image", "size": "256x256", "prompt": "A lantern"}
    # When a member asks for it
    response = api.post("/v1/images/generations", key=org.member_key, json_body=body)
    # Then the job is read back completed: answered with its URL, charged exactly once
    assert response.status == 200, response.body
    assert lost.hits == 1
    assert base64.b64decode(response.json()["data"][0]["b64_json"]).startswith(b"\x89PNG")
    assert len(captures(org.org_id)) == 1
    assert balance_of(api, admin_key, org.org_id) == GRANTED - SMALL_PRICE
    job = job_of(api, org.member_key, str(response.header("X-Image-Job-Id")))
    assert job["status"] == "completed"
    assert_nothing_held(org.org_id)


def test_an_inline_image_whose_settlement_is_throttled_is_503_and_releases_at_once(
    api: Api, admin_key: str, org: Tenant, faults: Faults
) -> None:
    # Given one throttled ledger write: the inline image's settlement (its capture)
    throttle = faults.inject(
        "dynamodb", "TransactWriteItems", "ThrottlingException", times=1, when=lambda body: b"capture" in body
    )
    body = {"model": "mock/image", "size": "256x256", "prompt": "A lamp"}
    # When a member asks for it
    refused = api.post("/v1/images/generations", key=org.member_key, json_body=body)
    # Then it is 503 and the hold went back at once: nothing held, nothing charged
    assert_aws_unavailable(refused)
    assert throttle.hits == 1
    assert_nothing_held(org.org_id)
    assert captures(org.org_id) == []
    assert balance_of(api, admin_key, org.org_id) == GRANTED
