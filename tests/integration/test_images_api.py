"""The image API and its worker through the template's gateway, queue and bucket (moto, in
process): jobs reserved, queued and run from the real queue by the worker function (the local
runtime's own SQS poller, honouring partial batch responses and the queue's redrive policy),
charged once whatever SQS delivers twice; batches accepted or refused whole; deduplication;
colour analysis; the synchronous OpenAI-compatible route."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
import requests

from tests.conftest import Api, ApiResponse, Tenant, load_event
from tests.integration.test_credits_api import (
    assert_ledger_matches_balance,
    assert_problem,
    balance_of,
    grant,
)
from tests.integration.test_generate_api import usage_logs
from tollgate import services
from tollgate.aws.dynamodb import serialize
from tollgate.aws.identity_store import DynamoIdentityStore
from tollgate.identity.models import Org
from tollgate.images.colors import decode_png
from tollgate.images.jobs import JobMessage, message_body
from tollgate.metering.models import CREDIT_UNITS
from tollgate.plans import LimitSpec
from tollgate.providers.imaging import image_info
from tollgate.providers.mock import mock_png
from tollgate_local.invoke import in_process_invoker
from tollgate_local.resources import REGION, CreatedStack
from tollgate_local.seed_templates import seed_table
from tollgate_local.sqs import QueuePoller, sqs_event, sqs_event_sources
from tollgate_local.template import default_template

IMAGES = "/v1/images"
SMALL = {"model": "mock/image", "size": "256x256"}
SMALL_PRICE = Decimal("0.13")  # $0.001 x 1.3 at $0.01 per credit
HD_PRICE = Decimal("1.04")  # 1024x1024 hd: $0.008 x 1.3
FAIL = {"mock": {"fail": "error"}}  # the mock answers HTTP 500 (a retryable failure)


@pytest.fixture
def funded(api: Api, admin_key: str, make_tenant: Any) -> Tenant:
    """An org with 10 credits."""
    tenant: Tenant = make_tenant()
    assert grant(api, admin_key, tenant.org_id, 10).status == 201
    return tenant


def sqs() -> Any:
    return boto3.client("sqs", region_name=REGION)


def worker_poller(stack: CreatedStack) -> QueuePoller:
    """The local runtime's poller of the worker's event source, invoking it in process; a
    failed message comes back at once (instead of after the visibility timeout)."""
    template = default_template()
    (source,) = [
        s for s in sqs_event_sources(template, stack.resolver) if s.function_id == "ImageWorkerFunction"
    ]
    return QueuePoller(
        source, sqs(), in_process_invoker(template), wait_seconds=0, failed_visibility_seconds=0
    )


def run_worker(stack: CreatedStack, rounds: int = 30) -> int:
    """Poll the queue until it is empty; returns how many messages were received."""
    poller = worker_poller(stack)
    handled = 0
    for _ in range(rounds):
        got = poller.poll_once()
        if not got:
            break
        handled += got
    return handled


def queue_count(stack: CreatedStack, logical_id: str) -> int:
    attributes = sqs().get_queue_attributes(
        QueueUrl=stack.resolver.refs[logical_id],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def submit(api: Api, key: str, prompt: str, **body: Any) -> ApiResponse:
    return api.post(IMAGES, key=key, json_body={**SMALL, "prompt": prompt, **body})


def job_of(api: Api, key: str, job_id: str) -> dict[str, Any]:
    response = api.get(f"{IMAGES}/{job_id}", key=key)
    assert response.status == 200, response.body
    return dict(response.json())


def download(url: str) -> bytes:
    """GET a presigned URL (moto answers it in process, as S3 would)."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return response.content


def held_of(api: Api, admin_key: str, org_id: str) -> Decimal:
    response = api.get(f"/v1/credits/balance?org_id={org_id}", key=admin_key)
    return Decimal(str(response.json()["held"]))


def asset_objects(stack: CreatedStack, org_id: str) -> list[str]:
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket=stack.names["AssetsBucket"], Prefix=f"assets/{org_id}/"
    )
    return [entry["Key"] for entry in listed.get("Contents") or []]


def receive_raw(stack: CreatedStack) -> list[dict[str, Any]]:
    answer = sqs().receive_message(
        QueueUrl=stack.resolver.refs["ImageJobsQueue"],
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        VisibilityTimeout=0,
    )
    return list(answer.get("Messages") or [])


def invoke_worker(event: dict[str, Any]) -> dict[str, Any]:
    return in_process_invoker(default_template())("ImageWorkerFunction", event)


# -- a job, end to end -------------------------------------------------------------------------------


def test_a_job_is_reserved_queued_made_by_the_worker_and_charged_exactly_its_price(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given 10 credits
    # When a member asks for a 256x256 image
    submitted = submit(api, funded.member_key, "A lighthouse at dusk")
    # Then it is accepted as a pending job, its price held at once and its message queued
    assert submitted.status == 202, submitted.body
    job = submitted.json()
    assert (job["status"], job["url"], job["estimated_credits"]) == ("pending", None, float(SMALL_PRICE))
    assert submitted.header("Location") == f"{IMAGES}/{job['id']}"
    assert held_of(api, admin_key, funded.org_id) == SMALL_PRICE
    assert queue_count(stack, "ImageJobsQueue") == 1
    # When the worker runs from the queue
    assert run_worker(stack) == 1
    # Then GET shows it completed, with an expiring URL that downloads a PNG of that size
    done = job_of(api, funded.member_key, job["id"])
    assert done["status"] == "completed"
    assert (done["width"], done["height"], done["format"], done["attempts"]) == (256, 256, "png", 1)
    assert done["url_expires_at"]
    data = download(done["url"])
    info = image_info(data)
    assert info is not None
    assert (info.format, info.width, info.height) == ("png", 256, 256)
    assert decode_png(data).width == 256
    assert data == mock_png("A lighthouse at dusk", 256, 256)
    assert done["bytes"] == len(data)
    # and the balance dropped by exactly the price of that size and quality, nothing held
    assert done["credits_charged"] == float(SMALL_PRICE)
    assert done["provider_cost_usd"] == 0.001
    assert balance_of(api, admin_key, funded.org_id) == 10 - SMALL_PRICE
    assert held_of(api, admin_key, funded.org_id) == 0
    assert queue_count(stack, "ImageJobsQueue") == 0
    # and the asset sits at the key fixed by the job id, with its metadata
    key = f"assets/{funded.org_id}/{job['id']}/0.png"
    head = boto3.client("s3", region_name=REGION).head_object(Bucket=stack.names["AssetsBucket"], Key=key)
    assert head["ContentType"] == "image/png"
    assert head["Metadata"]["org"] == funded.org_id
    assert head["Metadata"]["job"] == job["id"]
    assert head["Metadata"]["prompt-hash"] == job["prompt_hash"]
    assert head["Metadata"]["model"] == "mock/image"
    assert head["Metadata"]["cost-micro-usd"] == "1000"
    # and the job left exactly one usage log entry
    (entry,) = usage_logs(funded.org_id)
    assert (entry.request_id, entry.status.value, entry.kind, entry.credits) == (
        job["id"],
        "completed",
        "image",
        1300,
    )
    assert_ledger_matches_balance(api, admin_key, funded.org_id)


def test_the_dall_e_3_prices_are_the_prices_of_the_table(api: Api, admin_key: str, funded: Tenant) -> None:
    # An hd 1024x1024 mock image is priced as the table says ($0.008), and an unpriced
    # size/quality of the model is refused before anything is reserved
    submitted = submit(api, funded.owner_key, "A big one", size="1024x1024", quality="hd")
    assert submitted.json()["estimated_credits"] == float(HD_PRICE)
    refused = submit(api, funded.owner_key, "A small hd one", size="512x512", quality="hd")
    problem = assert_problem(refused, 422, "invalid_request")
    assert problem["errors"][0]["field"] == "quality"
    wrong = submit(api, funded.owner_key, "Too wide", size="2048x2048")
    assert assert_problem(wrong, 422, "invalid_request")["errors"][0]["field"] == "size"
    assert held_of(api, admin_key, funded.org_id) == HD_PRICE


def test_an_org_that_cannot_afford_a_job_gets_402_and_no_job(
    api: Api, admin_key: str, make_tenant: Any, stack: CreatedStack
) -> None:
    # Given an org with 1 credit
    tenant: Tenant = make_tenant()
    grant(api, admin_key, tenant.org_id, 1)
    # When it asks for an hd image (1.04 credits)
    refused = submit(api, tenant.owner_key, "Too dear", size="1024x1024", quality="hd")
    # Then it is refused, nothing is held, no job was made or queued, and the refusal is logged
    problem = assert_problem(refused, 402, "insufficient_credits")
    assert problem["needed"] == 10_400
    assert held_of(api, admin_key, tenant.org_id) == 0
    assert queue_count(stack, "ImageJobsQueue") == 0
    (entry,) = usage_logs(tenant.org_id)
    assert (entry.status.value, entry.error_class) == ("failed", "InsufficientCredits")


def test_another_orgs_job_and_ids_that_cannot_be_jobs_are_404(
    api: Api, funded: Tenant, make_tenant: Any
) -> None:
    job = submit(api, funded.member_key, "Mine").json()
    other: Tenant = make_tenant("Other")
    assert_problem(api.get(f"{IMAGES}/{job['id']}", key=other.owner_key), 404, "not_found")
    assert_problem(api.get(f"{IMAGES}/img_nope", key=funded.owner_key), 404, "not_found")
    assert_problem(api.get(f"{IMAGES}/batches/{job['id']}", key=funded.owner_key), 404, "not_found")
    # an owner sees the org's jobs; another member does not see a member's job
    assert job_of(api, funded.owner_key, job["id"])["id"] == job["id"]


def test_bad_bodies_are_refused_with_each_field(api: Api, funded: Tenant) -> None:
    both = api.post(IMAGES, key=funded.owner_key, json_body={"prompt": "x", "template_id": "t1"})
    assert_problem(both, 422, "invalid_request")
    unknown = api.post(IMAGES, key=funded.owner_key, json_body={"prompt": "x", "colour": "red"})
    assert assert_problem(unknown, 422, "invalid_request")["errors"][0]["field"] == "colour"
    many = api.post(IMAGES, key=funded.owner_key, json_body={"prompt": "x", "n": 9})
    assert assert_problem(many, 422, "invalid_request")["errors"][0]["field"] == "n"
    not_image = api.post(IMAGES, key=funded.owner_key, json_body={"prompt": "x", "model": "mock/chat"})
    assert assert_problem(not_image, 422, "invalid_request")["errors"][0]["field"] == "model"
    template = api.post(
        IMAGES, key=funded.owner_key, json_body={"template_id": "tpl_1", "variables": {"a": 1}}
    )
    assert_problem(template, 404, "not_found")


def test_the_same_post_with_an_idempotency_key_makes_one_job(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    headers = {"Idempotency-Key": "img-once"}
    body = {**SMALL, "prompt": "Once only"}
    first = api.post(IMAGES, key=funded.owner_key, json_body=body, headers=headers)
    again = api.post(IMAGES, key=funded.owner_key, json_body=body, headers=headers)
    assert again.header("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert queue_count(stack, "ImageJobsQueue") == 1
    assert held_of(api, admin_key, funded.org_id) == SMALL_PRICE


# -- at most once in effect ---------------------------------------------------------------------------


def test_a_message_delivered_twice_makes_one_asset_and_one_charge(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given a queued job, and its message received (the delivery in hand)
    job = submit(api, funded.member_key, "Delivered twice").json()
    (message,) = receive_raw(stack)
    event = sqs_event([message], worker_poller(stack).source.queue_arn)
    # When SQS delivers it twice (the same message, once more after its visibility timeout)
    first = invoke_worker(event)
    second = invoke_worker(event)
    # Then both deliveries succeed, the second doing nothing
    assert first == {"batchItemFailures": []}
    assert second == {"batchItemFailures": []}
    done = job_of(api, funded.member_key, job["id"])
    assert (done["status"], done["attempts"]) == ("completed", 1)
    assert asset_objects(stack, funded.org_id) == [f"assets/{funded.org_id}/{job['id']}/0.png"]
    assert balance_of(api, admin_key, funded.org_id) == 10 - SMALL_PRICE
    assert len(usage_logs(funded.org_id)) == 1
    assert_ledger_matches_balance(api, admin_key, funded.org_id)


def test_the_same_job_sent_twice_as_two_messages_makes_one_asset_and_one_charge(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given a queued job whose message a sender sent once more (two SQS messages, one job)
    job = submit(api, funded.member_key, "Sent twice").json()
    sqs().send_message(
        QueueUrl=stack.resolver.refs["ImageJobsQueue"],
        MessageBody=message_body(JobMessage(funded.org_id, job["id"])),
    )
    # When the worker takes both from the queue
    assert run_worker(stack) == 2
    # Then one asset, one charge, one log entry: the job's state decides, not the message id
    assert asset_objects(stack, funded.org_id) == [f"assets/{funded.org_id}/{job['id']}/0.png"]
    assert job_of(api, funded.member_key, job["id"])["attempts"] == 1
    assert balance_of(api, admin_key, funded.org_id) == 10 - SMALL_PRICE
    assert len(usage_logs(funded.org_id)) == 1


def test_a_worker_that_died_mid_job_is_taken_over_once_its_lease_expires(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given a job a worker claimed and then died on (its lease expired a minute ago)
    job = submit(api, funded.member_key, "Orphaned").json()
    past = datetime.now(UTC) - timedelta(minutes=5)
    claim = services.image_jobs().claim(funded.org_id, job["id"], past, past + timedelta(minutes=4))
    assert claim.claimed
    # When its message comes back
    assert run_worker(stack) == 1
    # Then the next delivery took it over and completed it, charged once
    done = job_of(api, funded.member_key, job["id"])
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert balance_of(api, admin_key, funded.org_id) == 10 - SMALL_PRICE


def test_a_delivery_while_another_worker_holds_the_job_comes_back_later(
    api: Api, funded: Tenant, stack: CreatedStack
) -> None:
    # Given a job another worker holds right now (a live lease)
    job = submit(api, funded.member_key, "Busy").json()
    now = datetime.now(UTC)
    assert services.image_jobs().claim(funded.org_id, job["id"], now, now + timedelta(minutes=5)).claimed
    (message,) = receive_raw(stack)
    # When a second delivery of its message arrives
    answer = invoke_worker(sqs_event([message], worker_poller(stack).source.queue_arn))
    # Then it is reported failed (it comes back), and the job was not touched
    assert answer == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert job_of(api, funded.member_key, job["id"])["status"] == "processing"
    assert asset_objects(stack, funded.org_id) == []


def test_a_job_whose_provider_always_fails_ends_failed_released_and_in_the_dlq(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given a job whose provider answers HTTP 500 every time
    job = submit(api, funded.member_key, "Never", metadata=FAIL).json()
    assert held_of(api, admin_key, funded.org_id) == SMALL_PRICE
    # When the worker receives it again and again (the queue's maxReceiveCount is 5)
    receives = run_worker(stack)
    # Then it was tried on each of the 5 receives, then moved to the DLQ
    assert receives == 5
    assert queue_count(stack, "ImageJobsQueue") == 0
    (dead,) = sqs().receive_message(QueueUrl=stack.resolver.refs["ImageJobsDLQ"])["Messages"]
    assert json.loads(dead["Body"])["job_id"] == job["id"]
    # and the job is failed with its error, its credits released: nothing charged
    failed = job_of(api, funded.member_key, job["id"])
    assert (failed["status"], failed["attempts"], failed["credits_charged"]) == ("failed", 5, 0)
    assert failed["error"]["code"] == "provider_error"
    assert failed["error"]["provider_status"] == 500
    assert balance_of(api, admin_key, funded.org_id) == 10
    assert held_of(api, admin_key, funded.org_id) == 0
    (entry,) = usage_logs(funded.org_id)
    assert (entry.status.value, entry.error_class, entry.credits) == ("failed", "UpstreamError", 0)
    assert_ledger_matches_balance(api, admin_key, funded.org_id)


def test_a_provider_refusing_the_request_fails_the_job_at_once_without_retries(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    job = submit(api, funded.member_key, "Refused", metadata={"mock": {"fail": "invalid"}}).json()
    assert run_worker(stack) == 1
    failed = job_of(api, funded.member_key, job["id"])
    assert (failed["status"], failed["attempts"], failed["error"]["provider_status"]) == ("failed", 1, 400)
    assert queue_count(stack, "ImageJobsDLQ") == 0
    assert balance_of(api, admin_key, funded.org_id) == 10


def test_in_a_mixed_batch_of_records_only_the_failing_ones_come_back(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given three queued jobs, the middle one failing at its provider
    ok1 = submit(api, funded.member_key, "First").json()
    bad = submit(api, funded.member_key, "Second", metadata=FAIL).json()
    ok2 = submit(api, funded.member_key, "Third").json()
    messages = receive_raw(stack)
    assert len(messages) == 3
    # When the worker gets the three in one event
    answer = invoke_worker(sqs_event(messages, worker_poller(stack).source.queue_arn))
    # Then only the failing record is reported, the others completed, the failing one pending
    by_job = {json.loads(m["Body"])["job_id"]: m["MessageId"] for m in messages}
    assert answer == {"batchItemFailures": [{"itemIdentifier": by_job[bad["id"]]}]}
    assert job_of(api, funded.member_key, ok1["id"])["status"] == "completed"
    assert job_of(api, funded.member_key, ok2["id"])["status"] == "completed"
    retrying = job_of(api, funded.member_key, bad["id"])
    assert (retrying["status"], retrying["error"]["provider_status"]) == ("pending", 500)
    assert held_of(api, admin_key, funded.org_id) == SMALL_PRICE


def test_a_job_that_waited_past_the_stale_hold_limit_fails_without_calling_a_provider(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given a queued job whose hold the scheduler's sweep released (it waited too long)
    job = submit(api, funded.member_key, "Too late").json()
    services.metering().release_stale(funded.org_id, older_than=datetime.now(UTC) + timedelta(seconds=1))
    # When its message is delivered
    assert run_worker(stack) == 1
    # Then it fails as expired: no asset, nothing charged, one log entry
    failed = job_of(api, funded.member_key, job["id"])
    assert (failed["status"], failed["error"]["code"]) == ("failed", "reservation_expired")
    assert asset_objects(stack, funded.org_id) == []
    assert balance_of(api, admin_key, funded.org_id) == 10
    assert len(usage_logs(funded.org_id)) == 1


# -- batches ------------------------------------------------------------------------------------------


def batch_items(count: int, prefix: str = "Item", **extra: Any) -> list[dict[str, Any]]:
    return [{**SMALL, "prompt": f"{prefix} {n}", **extra} for n in range(count)]


def test_a_batch_the_org_cannot_afford_is_refused_whole_with_nothing_reserved(
    api: Api, admin_key: str, make_tenant: Any, stack: CreatedStack
) -> None:
    # Given an org with 1 credit: seven small images (0.91) fit, eight (1.04) do not
    tenant: Tenant = make_tenant()
    grant(api, admin_key, tenant.org_id, 1)
    # When it sends a batch of eight
    refused = api.post(f"{IMAGES}/batch", key=tenant.owner_key, json_body={"items": batch_items(8)})
    # Then the whole batch is refused: nothing held, no job queued
    problem = assert_problem(refused, 402, "insufficient_credits")
    assert problem["needed"] == 8 * 1300
    assert held_of(api, admin_key, tenant.org_id) == 0
    assert queue_count(stack, "ImageJobsQueue") == 0
    # and one invalid item refuses the whole batch too, naming the item
    invalid = api.post(
        f"{IMAGES}/batch",
        key=tenant.owner_key,
        json_body={"items": [*batch_items(2), {**SMALL, "prompt": "x", "size": "300x300"}]},
    )
    assert assert_problem(invalid, 422, "invalid_request")["errors"][0]["field"] == "items.2.size"
    assert held_of(api, admin_key, tenant.org_id) == 0


def test_a_batch_over_the_hourly_image_limit_is_refused_whole(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given the starter plan's 20 images an hour, 18 of them used
    accepted = api.post(f"{IMAGES}/batch", key=funded.owner_key, json_body={"items": batch_items(18)})
    assert accepted.status == 202, accepted.body
    # When a batch of three more is sent
    refused = api.post(f"{IMAGES}/batch", key=funded.owner_key, json_body={"items": batch_items(3, "More")})
    # Then it is refused whole (429), and only the first batch is held
    problem = assert_problem(refused, 429, "rate_limited")
    assert problem["limit"]["max"] == 20
    assert refused.header("Retry-After")
    assert held_of(api, admin_key, funded.org_id) == 18 * SMALL_PRICE
    assert queue_count(stack, "ImageJobsQueue") == 18


def test_an_affordable_batch_completes_with_its_progress_visible_while_it_runs(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given a batch of five images accepted (all held at once)
    accepted = api.post(f"{IMAGES}/batch", key=funded.member_key, json_body={"items": batch_items(5)})
    assert accepted.status == 202, accepted.body
    batch = accepted.json()
    assert (batch["status"], batch["progress"]["total"], batch["progress"]["pending"]) == ("pending", 5, 5)
    assert batch["estimated_credits"] == float(5 * SMALL_PRICE)
    assert held_of(api, admin_key, funded.org_id) == 5 * SMALL_PRICE
    # When the worker has done two of them
    messages = receive_raw(stack)
    while len(messages) < 5:
        messages += receive_raw(stack)
    invoke_worker(sqs_event(messages[:2], worker_poller(stack).source.queue_arn))
    # Then the batch shows its progress
    running = api.get(f"{IMAGES}/batches/{batch['id']}", key=funded.member_key).json()
    assert running["status"] == "processing"
    assert (
        running["progress"]["completed"],
        running["progress"]["pending"],
        running["progress"]["percent"],
    ) == (
        2,
        3,
        40,
    )
    # When the rest is done
    invoke_worker(sqs_event(messages[2:], worker_poller(stack).source.queue_arn))
    for message in messages:
        sqs().delete_message(
            QueueUrl=stack.resolver.refs["ImageJobsQueue"], ReceiptHandle=message["ReceiptHandle"]
        )
    # Then it is completed, every image downloads, and exactly five images were charged
    done = api.get(f"{IMAGES}/batches/{batch['id']}", key=funded.member_key).json()
    assert (done["status"], done["progress"]["completed"], done["progress"]["percent"]) == (
        "completed",
        5,
        100,
    )
    assert done["credits_charged"] == float(5 * SMALL_PRICE)
    for job in done["jobs"]:
        assert image_info(download(job["url"])) is not None
    assert balance_of(api, admin_key, funded.org_id) == 10 - 5 * SMALL_PRICE
    assert held_of(api, admin_key, funded.org_id) == 0
    assert services.metering().reservation(funded.org_id, batch["id"]).status.value == "settled"
    assert_ledger_matches_balance(api, admin_key, funded.org_id)


def test_a_mixed_batch_charges_what_completed_and_releases_what_failed(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given a batch of three, one of which always fails at its provider
    items = [*batch_items(2), {**SMALL, "prompt": "Broken", "metadata": FAIL}]
    batch = api.post(f"{IMAGES}/batch", key=funded.owner_key, json_body={"items": items}).json()
    # When the worker has run it all (the failing job through its five receives)
    run_worker(stack)
    # Then two are completed and charged, one failed and released; the batch is done
    done = api.get(f"{IMAGES}/batches/{batch['id']}", key=funded.owner_key).json()
    assert done["status"] == "completed"
    assert (done["progress"]["completed"], done["progress"]["failed"]) == (2, 1)
    assert balance_of(api, admin_key, funded.org_id) == 10 - 2 * SMALL_PRICE
    assert held_of(api, admin_key, funded.org_id) == 0
    assert queue_count(stack, "ImageJobsDLQ") == 1
    assert_ledger_matches_balance(api, admin_key, funded.org_id)


# -- deduplication and the cache ----------------------------------------------------------------------


def test_an_identical_prompt_reuses_the_asset_at_cost_zero_and_cache_skip_does_not(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given a completed image
    first = submit(api, funded.member_key, "A  quiet harbour ").json()
    run_worker(stack)
    original = job_of(api, funded.member_key, first["id"])
    # When the same prompt is asked for again (its spaces aside)
    again = submit(api, funded.member_key, "A quiet harbour")
    # Then it is answered at once from the same asset, at cost 0, with nothing queued
    assert again.status == 202
    assert again.header("X-Cache") == "HIT"
    reused = again.json()
    assert (reused["status"], reused["cached"], reused["source_job_id"]) == ("completed", True, first["id"])
    assert (reused["credits_charged"], reused["provider_cost_usd"]) == (0, 0)
    assert download(reused["url"]) == download(original["url"])
    assert queue_count(stack, "ImageJobsQueue") == 0
    assert balance_of(api, admin_key, funded.org_id) == 10 - SMALL_PRICE
    # and the original's usage count went up
    assert job_of(api, funded.member_key, first["id"])["usage_count"] == 1
    # and the hit is logged as such
    hit_entry = next(e for e in usage_logs(funded.org_id) if e.request_id == reused["id"])
    assert (hit_entry.cache_hit, hit_entry.credits) == (True, 0)
    # When it is asked with cache: {skip: true}
    fresh = submit(api, funded.member_key, "A quiet harbour", cache={"skip": True})
    # Then it is a new job, queued and charged
    assert fresh.header("X-Cache") == "MISS"
    assert (fresh.json()["status"], fresh.json()["cached"]) == ("pending", False)
    run_worker(stack)
    assert balance_of(api, admin_key, funded.org_id) == 10 - 2 * SMALL_PRICE
    # and a different size is a different image
    assert submit(api, funded.member_key, "A quiet harbour", size="512x512").json()["status"] == "pending"
    assert_ledger_matches_balance(api, admin_key, funded.org_id)


def test_an_identical_context_reuses_the_asset_whatever_the_prompt(
    api: Api, admin_key: str, funded: Tenant, make_tenant: Any, stack: CreatedStack
) -> None:
    context = {"product": "sku-42", "view": "hero"}
    first = submit(api, funded.owner_key, "Product shot of sku-42", context=context).json()
    run_worker(stack)
    reused = submit(api, funded.owner_key, "A hero image for sku-42, studio light", context=context).json()
    assert (reused["cached"], reused["source_job_id"]) == (True, first["id"])
    assert reused["context_hash"] == first["context_hash"]
    # Another org asking the same never gets this org's asset
    other: Tenant = make_tenant("Other")
    grant(api, admin_key, other.org_id, 1)
    assert submit(api, other.owner_key, "Product shot of sku-42", context=context).json()["cached"] is False


def test_a_context_with_fractions_is_answered_as_sent(api: Api, funded: Tenant) -> None:
    # Given: fractions, which JSON parsing makes floats (found by tests/e2e/test_fuzz_api.py)
    context = {"crop": [0.25, 1.5e-7], "ratio": 1.777, "deep": {"scale": -2.5}}
    # When
    submitted = submit(api, funded.owner_key, "A wide banner", context=context)
    # Then
    assert submitted.status == 202, submitted.body
    assert submitted.json()["context"] == context
    assert job_of(api, funded.owner_key, submitted.json()["id"])["context"] == context


def test_a_batch_reuses_the_assets_it_can_and_queues_the_rest(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    submit(api, funded.owner_key, "Item 0")
    run_worker(stack)
    batch = api.post(f"{IMAGES}/batch", key=funded.owner_key, json_body={"items": batch_items(3)}).json()
    assert [job["cached"] for job in batch["jobs"]] == [True, False, False]
    assert batch["progress"]["completed"] == 1
    assert queue_count(stack, "ImageJobsQueue") == 2
    run_worker(stack)
    assert balance_of(api, admin_key, funded.org_id) == 10 - 3 * SMALL_PRICE


# -- colour analysis ----------------------------------------------------------------------------------


def test_the_palette_of_a_generated_asset_and_another_orgs_asset_is_404(
    api: Api, admin_key: str, funded: Tenant, make_tenant: Any, stack: CreatedStack
) -> None:
    # Given a completed image
    job = submit(api, funded.member_key, "Sunset over the sea").json()
    run_worker(stack)
    done = job_of(api, funded.member_key, job["id"])
    before = balance_of(api, admin_key, funded.org_id)
    # When its palette is asked for, by job id and by its URL
    by_job = api.post(
        f"{IMAGES}/analyze", key=funded.member_key, json_body={"job_id": job["id"], "colors": 4}
    )
    by_url = api.post(f"{IMAGES}/analyze", key=funded.member_key, json_body={"url": done["url"], "colors": 4})
    # Then both answer the same palette: four colours whose shares add up to 100 %, with
    # their complements, and each call costs the feature's flat 0.5 credit
    assert by_job.status == 200, by_job.body
    palette = by_job.json()
    assert len(palette["colors"]) == 4
    assert sum(c["share_bp"] for c in palette["colors"]) == 10_000
    assert sum(Decimal(str(c["share"])) for c in palette["colors"]) == 100
    assert all(c["hex"].startswith("#") and len(c["complementary"]) == 7 for c in palette["colors"])
    assert palette["complementary"] == [c["complementary"] for c in palette["colors"]]
    assert (palette["width"], palette["height"]) == (256, 256)
    assert by_url.json()["colors"] == palette["colors"]
    assert Decimal(by_job.header("X-Credits-Charged") or "") == Decimal("0.5")
    assert balance_of(api, admin_key, funded.org_id) == before - 1
    # When another org asks for it, by job id or by URL
    other: Tenant = make_tenant("Other")
    grant(api, admin_key, other.org_id, 5)
    assert_problem(
        api.post(f"{IMAGES}/analyze", key=other.owner_key, json_body={"job_id": job["id"]}), 404, "not_found"
    )
    assert_problem(
        api.post(f"{IMAGES}/analyze", key=other.owner_key, json_body={"url": done["url"]}), 404, "not_found"
    )
    # Then nothing was charged to it
    assert balance_of(api, admin_key, other.org_id) == 5


def test_an_uploaded_png_is_analysed_and_other_formats_are_refused(
    api: Api, admin_key: str, funded: Tenant
) -> None:
    png = mock_png("uploaded", 64, 48)
    answer = api.post(
        f"{IMAGES}/analyze", key=funded.owner_key, json_body={"image": base64.b64encode(png).decode()}
    )
    assert answer.status == 200, answer.body
    assert (answer.json()["width"], answer.json()["height"], answer.json()["source"]["type"]) == (
        64,
        48,
        "upload",
    )
    jpeg = b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x10\x00\x20" + b"\x00" * 40
    refused = api.post(
        f"{IMAGES}/analyze", key=funded.owner_key, json_body={"image": base64.b64encode(jpeg).decode()}
    )
    assert_problem(refused, 415, "unsupported_media_type")
    garbage = api.post(f"{IMAGES}/analyze", key=funded.owner_key, json_body={"image": "not base64!"})
    assert assert_problem(garbage, 422, "invalid_request")["errors"][0]["field"] == "image"
    neither = api.post(f"{IMAGES}/analyze", key=funded.owner_key, json_body={"colors": 3})
    assert_problem(neither, 422, "invalid_request")
    # only the one analysis was charged
    assert balance_of(api, admin_key, funded.org_id) == Decimal("9.5")


# -- the synchronous OpenAI-compatible route -------------------------------------------------------------


def test_images_generations_answers_inline_metered_as_a_job(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # When an image is asked for inline, as base64
    inline = api.post(
        f"{IMAGES}/generations",
        key=funded.owner_key,
        json_body={
            "model": "mock/image",
            "prompt": "Inline fox",
            "size": "256x256",
            "response_format": "b64_json",
        },
    )
    # Then it answers OpenAI's shape with the PNG, charged the image's price
    assert inline.status == 200, inline.body
    (image,) = inline.json()["data"]
    assert base64.b64decode(image["b64_json"]) == mock_png("Inline fox", 256, 256)
    assert inline.header("X-Cache") == "MISS"
    assert Decimal(inline.header("X-Credits-Charged") or "") == SMALL_PRICE
    assert balance_of(api, admin_key, funded.org_id) == 10 - SMALL_PRICE
    # and it is a job like any other (GET shows it), logged once
    job = job_of(api, funded.owner_key, inline.header("X-Image-Job-Id") or "")
    assert (job["status"], job["credits_charged"]) == ("completed", float(SMALL_PRICE))
    # When the same prompt is asked for as a URL
    again = api.post(
        f"{IMAGES}/generations",
        key=funded.owner_key,
        json_body={
            "model": "mock/image",
            "prompt": "Inline fox",
            "size": "256x256",
            "response_format": "url",
        },
    )
    # Then the stored image answers at cost 0
    assert again.header("X-Cache") == "HIT"
    assert download(again.json()["data"][0]["url"]) == mock_png("Inline fox", 256, 256)
    assert balance_of(api, admin_key, funded.org_id) == 10 - SMALL_PRICE
    # and a failing provider is a 502 with nothing charged
    failed = api.post(
        f"{IMAGES}/generations",
        key=funded.owner_key,
        json_body={"model": "mock/image", "prompt": "Broken", "size": "256x256", "metadata": FAIL},
    )
    assert_problem(failed, 502, "provider_error")
    assert balance_of(api, admin_key, funded.org_id) == 10 - SMALL_PRICE
    assert held_of(api, admin_key, funded.org_id) == 0
    assert len(usage_logs(funded.org_id)) == 3
    # and too many images inline are refused with a pointer to the job API
    many = api.post(f"{IMAGES}/generations", key=funded.owner_key, json_body={"prompt": "Lots", "n": 5})
    assert "POST /v1/images" in assert_problem(many, 422, "invalid_request")["errors"][0]["message"]
    assert_ledger_matches_balance(api, admin_key, funded.org_id)


# -- the sample events ---------------------------------------------------------------------------------


def test_the_sample_events_are_answered(stack: CreatedStack) -> None:
    # Given the org of the sample events, with credits
    event = load_event("images")
    org_id = event["requestContext"]["authorizer"]["org_id"]
    DynamoIdentityStore(services.table()).put_org(
        Org(org_id=org_id, name="Sample", plan="starter", created_at=datetime.now(UTC))
    )
    services.metering().grant(org_id, 10 * CREDIT_UNITS, operation_id="sample-event-grant")
    invoke = in_process_invoker(default_template())
    # When the images function handles events/images.json
    result = invoke("ImagesFunction", event)
    # Then it is a pending job
    assert result["statusCode"] == 202, result
    job_id = json.loads(result["body"])["id"]
    # When the worker handles events/image_worker.json, pointed at that job
    worker_event = load_event("image_worker")
    worker_event["Records"][0]["body"] = message_body(JobMessage(org_id, job_id))
    assert invoke("ImageWorkerFunction", worker_event) == {"batchItemFailures": []}
    # Then the job is completed
    item = services.table().client.get_item(
        TableName=services.table().name, Key=serialize({"pk": f"ORG#{org_id}#IMG#{job_id}", "sk": "JOB"})
    )["Item"]
    assert item["status"]["S"] == "completed"


def test_a_message_that_is_not_a_job_is_dropped(stack: CreatedStack) -> None:
    event = load_event("image_worker")
    event["Records"][0]["body"] = "hello"
    assert invoke_worker(event) == {"batchItemFailures": []}


def test_a_limit_override_on_images_applies_to_jobs(api: Api, admin_key: str, funded: Tenant) -> None:
    services.metering().set_limit_overrides(
        funded.org_id, [LimitSpec(scope="org", metric="requests", window="hour", max=1, kind="image")]
    )
    # one image fits the hour, a second does not
    assert submit(api, funded.owner_key, "One").status == 202
    assert_problem(submit(api, funded.owner_key, "Two"), 429, "rate_limited")


# -- jobs from image templates (S8) -----------------------------------------------------------------

TEMPLATES = "/v1/templates"
PHOTO: dict[str, Any] = {
    "name": "Photo",
    "category": "demo",
    "kind": "image",
    "body": "A photo of a {{ kind }} in {{ place }}.",
    "variables": [
        {"name": "kind", "type": "enum", "values": ["loft", "cabin"]},
        {"name": "place", "max_length": 40},
    ],
    "params": {"model": "mock/image", "size": "256x256"},
}


def create_template(api: Api, key: str, body: dict[str, Any]) -> str:
    response = api.post(TEMPLATES, key=key, json_body=body)
    assert response.status == 201, response.body
    return str(response.json()["id"])


def template_uses(api: Api, key: str, template_id: str, version: int) -> tuple[int, int]:
    """(the template's usage count, its version's)."""
    head = api.get(f"{TEMPLATES}/{template_id}", key=key).json()["usage_count"]
    one = api.get(f"{TEMPLATES}/{template_id}/versions/{version}", key=key).json()["usage_count"]
    return int(head), int(one)


def test_an_image_template_makes_a_job_the_worker_completes_at_the_templates_declared_price(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given an org's image template at a flat 0.5 credit per call
    priced = {**PHOTO, "feature": "listing_photo", "price": {"rule": "flat", "credits": 0.5}}
    tid = create_template(api, funded.owner_key, priced)
    # When a member posts it with its variables
    submitted = api.post(
        IMAGES,
        key=funded.member_key,
        json_body={"template_id": tid, "variables": {"kind": "loft", "place": "Oslo"}},
    )
    # Then a pending job is accepted, its declared price held, naming the template and version
    assert submitted.status == 202, submitted.body
    job = submitted.json()
    assert (job["status"], job["template_id"], job["template_version"]) == ("pending", tid, 1)
    assert (job["feature"], job["prompt"], job["size"]) == (
        "listing_photo",
        "A photo of a loft in Oslo.",
        "256x256",
    )
    assert held_of(api, admin_key, funded.org_id) == Decimal("0.5")
    # and no use is counted before the job completes
    assert template_uses(api, funded.member_key, tid, 1) == (0, 0)
    # When the worker runs
    assert run_worker(stack) == 1
    # Then the job completed with the template's image, at exactly the declared price
    done = job_of(api, funded.member_key, job["id"])
    assert (done["status"], done["template_id"], done["template_version"]) == ("completed", tid, 1)
    assert download(done["url"]) == mock_png("A photo of a loft in Oslo.", 256, 256)
    assert done["credits_charged"] == 0.5
    assert balance_of(api, admin_key, funded.org_id) == 10 - Decimal("0.5")
    assert held_of(api, admin_key, funded.org_id) == 0
    # and its usage log entry names the template and version
    (entry,) = usage_logs(funded.org_id)
    assert (entry.request_id, entry.template_id, entry.template_version) == (job["id"], tid, 1)
    assert (entry.feature, entry.credits) == ("listing_photo", 5_000)
    # and one use is counted, on the template and on its version
    assert template_uses(api, funded.member_key, tid, 1) == (1, 1)
    # When the same variables are posted again
    again = api.post(
        IMAGES,
        key=funded.member_key,
        json_body={"template_id": tid, "variables": {"kind": "loft", "place": "Oslo"}},
    )
    # Then the earlier asset answers at once, as a cache hit of the template's rule (free), counted as a use
    reused = again.json()
    assert (reused["status"], reused["cached"], reused["source_job_id"]) == ("completed", True, job["id"])
    assert (reused["credits_charged"], reused["template_id"]) == (0, tid)
    assert template_uses(api, funded.member_key, tid, 1) == (2, 2)
    assert balance_of(api, admin_key, funded.org_id) == 10 - Decimal("0.5")
    assert_ledger_matches_balance(api, admin_key, funded.org_id)


def test_an_old_version_of_an_image_template_still_makes_its_image_and_the_requests_fields_win(
    api: Api, funded: Tenant, stack: CreatedStack
) -> None:
    # Given an image template updated to version 2
    tid = create_template(api, funded.owner_key, PHOTO)
    changed = api.request(
        "PUT",
        f"{TEMPLATES}/{tid}",
        key=funded.owner_key,
        json_body={"body": "A drawing of a {{ kind }} in {{ place }}."},
    )
    assert changed.json()["version"] == 2
    variables = {"kind": "cabin", "place": "Bergen"}
    # When version 1 is asked for, with a size of the request's own, and the current one plainly
    old = api.post(
        IMAGES,
        key=funded.member_key,
        json_body={"template_id": tid, "template_version": 1, "variables": variables, "size": "512x512"},
    ).json()
    new = api.post(
        IMAGES, key=funded.member_key, json_body={"template_id": tid, "variables": variables}
    ).json()
    assert run_worker(stack) == 2
    # Then version 1 renders as it did, at the request's size; the current one is version 2
    old_done, new_done = job_of(api, funded.member_key, old["id"]), job_of(api, funded.member_key, new["id"])
    assert (old_done["template_version"], old_done["size"], old_done["width"]) == (1, "512x512", 512)
    assert download(old_done["url"]) == mock_png("A photo of a cabin in Bergen.", 512, 512)
    assert (new_done["template_version"], new_done["prompt"]) == (2, "A drawing of a cabin in Bergen.")
    # and each version counts its own use (charged as the image feature: no declared price)
    assert new_done["feature"] == "image"
    assert template_uses(api, funded.member_key, tid, 1) == (2, 1)
    assert template_uses(api, funded.member_key, tid, 2) == (2, 1)


def test_image_template_refusals_name_the_fault_and_reserve_nothing(
    api: Api, admin_key: str, funded: Tenant, make_tenant: Any, stack: CreatedStack
) -> None:
    # Given an image template of another org, one of this org, and a text template
    other: Tenant = make_tenant()
    foreign = create_template(api, other.owner_key, PHOTO)
    own = create_template(
        api, funded.owner_key, {**PHOTO, "feature": "photo", "price": {"rule": "flat", "credits": 1}}
    )
    text = create_template(
        api, funded.owner_key, {"name": "Text", "body": "Hi {{ who }}", "variables": [{"name": "who"}]}
    )
    ok = {"kind": "loft", "place": "Rome"}

    def post(body: dict[str, Any]) -> ApiResponse:
        return api.post(IMAGES, key=funded.member_key, json_body=body)

    def fields(response: ApiResponse) -> set[str]:
        return {e["field"] for e in assert_problem(response, 422, "invalid_request")["errors"]}

    # Then another org's private template is 404, as if it did not exist
    assert_problem(post({"template_id": foreign, "variables": ok}), 404, "not_found")
    # and missing, ill-typed and too long variables are 422 naming each one
    assert fields(post({"template_id": own, "variables": {"kind": "castle"}})) == {
        "variables.kind",
        "variables.place",
    }
    assert fields(post({"template_id": own, "variables": {**ok, "place": "x" * 41}})) == {"variables.place"}
    # and a text template is 422 on template_id; a version that does not exist too
    assert fields(post({"template_id": text, "variables": {"who": "Al"}})) == {"template_id"}
    assert fields(post({"template_id": own, "template_version": 7, "variables": ok})) == {"template_version"}
    # and a template charged as its feature refuses another feature
    assert fields(post({"template_id": own, "variables": ok, "feature": "image"})) == {"feature"}
    # and in a batch, the item at fault is named and the batch refused whole
    batch = api.post(
        f"{IMAGES}/batch",
        key=funded.member_key,
        json_body={"items": [{"template_id": own, "variables": ok}, {"template_id": own, "variables": {}}]},
    )
    assert fields(batch) == {"items.1.variables.kind", "items.1.variables.place"}
    foreign_item = api.post(
        f"{IMAGES}/batch",
        key=funded.member_key,
        json_body={"items": [{"template_id": foreign, "variables": ok}]},
    )
    assert_problem(foreign_item, 404, "not_found")
    # and nothing was held, charged, queued or counted
    assert held_of(api, admin_key, funded.org_id) == 0
    assert balance_of(api, admin_key, funded.org_id) == 10
    assert queue_count(stack, "ImageJobsQueue") == 0
    assert template_uses(api, funded.member_key, own, 1) == (0, 0)


def test_a_batch_from_the_starter_listing_photo_completes_and_counts_each_job(
    api: Api, admin_key: str, funded: Tenant, stack: CreatedStack
) -> None:
    # Given the shipped starter templates
    table = services.table()
    seed_table(table.name, table.client)
    starter = "tpl_starter-listing-photo"
    listings = [
        {"title": "Sunny loft", "property_type": "loft", "location": "Le Marais, Paris"},
        {"title": "Quiet cabin", "property_type": "cabin", "location": "Lofoten"},
    ]
    # When a batch makes a listing photo of each listing, small, on the mock
    items = [{"template_id": starter, "variables": v, **SMALL} for v in listings]
    accepted = api.post(f"{IMAGES}/batch", key=funded.member_key, json_body={"items": items})
    assert accepted.status == 202, accepted.body
    assert run_worker(stack) == 2
    # Then both complete from the starter's prompt, each at the image feature's price
    jobs = [job_of(api, funded.member_key, j["id"]) for j in accepted.json()["jobs"]]
    assert [(j["status"], j["template_id"], j["template_version"]) for j in jobs] == [
        ("completed", starter, 1)
    ] * 2
    assert 'for the listing "Quiet cabin"' in jobs[1]["prompt"]
    assert balance_of(api, admin_key, funded.org_id) == 10 - 2 * SMALL_PRICE
    # and the public template counted one use per job
    assert template_uses(api, funded.member_key, starter, 1) == (2, 2)
    assert_ledger_matches_balance(api, admin_key, funded.org_id)
