"""The image pipeline's settings in template.yaml hold together: the queue's visibility timeout
is at least six times the worker's timeout, its DLQ takes a message after the number of
receives the worker counts as its last, partial batch responses are on, and the assets bucket
is private and encrypted."""

from __future__ import annotations

from typing import Any

from tollgate_local.template import default_template, function_properties

WORKER = "ImageWorkerFunction"


def resource(logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = default_template()["Resources"][logical_id]["Properties"]
    return props


def test_the_visibility_timeout_is_at_least_six_times_the_worker_timeout() -> None:
    worker = function_properties(default_template(), WORKER)
    assert int(resource("ImageJobsQueue")["VisibilityTimeout"]) >= 6 * int(worker["Timeout"])


def test_the_dlq_takes_a_message_after_the_receive_the_worker_counts_as_its_last() -> None:
    redrive = resource("ImageJobsQueue")["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["ImageJobsDLQ", "Arn"]}
    assert int(redrive["maxReceiveCount"]) >= 5
    environment = function_properties(default_template(), WORKER)["Environment"]["Variables"]
    assert int(environment["IMAGE_JOB_MAX_RECEIVE_COUNT"]) == int(redrive["maxReceiveCount"])
    assert int(resource("ImageJobsDLQ")["MessageRetentionPeriod"]) > int(
        resource("ImageJobsQueue")["MessageRetentionPeriod"]
    )


def test_the_worker_reports_partial_batch_failures_from_the_jobs_queue() -> None:
    (event,) = function_properties(default_template(), WORKER)["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["ImageJobsQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 < int(event["Properties"]["BatchSize"]) <= 10


def test_queues_are_encrypted_and_the_assets_bucket_is_private() -> None:
    assert resource("ImageJobsQueue")["SqsManagedSseEnabled"] is True
    assert resource("ImageJobsDLQ")["SqsManagedSseEnabled"] is True
    bucket = resource("AssetsBucket")
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]


def test_the_functions_reach_only_the_assets_prefix_of_the_bucket() -> None:
    for function_id in ("ImagesFunction", WORKER):
        statements = [
            statement
            for policy in function_properties(default_template(), function_id)["Policies"]
            for statement in (policy.get("Statement") or [])
            if any(
                str(action).startswith("s3:")
                for action in statement["Action"]
                if isinstance(statement["Action"], list)
            )
            or str(statement["Action"]).startswith("s3:")
        ]
        resources = [statement["Resource"] for statement in statements]
        assert {"Fn::Sub": "${AssetsBucket.Arn}/assets/*"} in resources
        listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
        assert listing["Condition"] == {"StringLike": {"s3:prefix": ["assets/*"]}}
