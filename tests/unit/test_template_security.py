"""What docs/security.md promises of template.yaml beyond checkov's checks (make iac): every
bucket TLS-only and closed to the public, every queue and function log encrypted or retained,
every suppression explained; and that the local runtime decides on every resource type.

The template is read as the local runtime reads it; moto in-process where a stack is created."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from tollgate_local.resources import REGION, CreatedStack, UnknownResourceType, create_stack
from tollgate_local.template import default_template, function_ids


def _resources(kind: str) -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = default_template()["Resources"]
    return {logical_id: r for logical_id, r in resources.items() if r["Type"] == kind}


def _tls_only_buckets() -> set[str]:
    """Buckets whose policy denies every S3 action over plain HTTP, on the bucket and its objects."""
    covered: set[str] = set()
    for policy in _resources("AWS::S3::BucketPolicy").values():
        props = policy["Properties"]
        for statement in props["PolicyDocument"]["Statement"]:
            denies_plain_http = (
                statement["Effect"] == "Deny"
                and statement["Principal"] == "*"
                and statement["Action"] == "s3:*"
                and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            )
            if denies_plain_http and len(statement["Resource"]) == 2:
                covered.add(props["Bucket"]["Ref"])
    return covered


def test_every_bucket_refuses_plain_http() -> None:
    assert _tls_only_buckets() == set(_resources("AWS::S3::Bucket"))


@pytest.mark.parametrize("bucket_id", sorted(_resources("AWS::S3::Bucket")))
def test_every_bucket_blocks_public_access_and_acls(bucket_id: str) -> None:
    props = _resources("AWS::S3::Bucket")[bucket_id]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


@pytest.mark.parametrize("queue_id", sorted(_resources("AWS::SQS::Queue")))
def test_every_queue_is_encrypted_at_rest(queue_id: str) -> None:
    assert _resources("AWS::SQS::Queue")[queue_id]["Properties"]["SqsManagedSseEnabled"] is True


def test_every_function_logs_to_a_group_with_the_stacks_retention() -> None:
    groups = _resources("AWS::Logs::LogGroup")
    retained = {
        g["Properties"]["LogGroupName"]["Fn::Sub"]
        for g in groups.values()
        if g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    }
    assert len(retained) == len(groups)
    assert {f"/aws/lambda/${{{f}}}" for f in function_ids(default_template())} <= retained


def test_the_api_writes_access_logs_to_a_retained_group() -> None:
    (api,) = _resources("AWS::Serverless::Api").values()
    destination = api["Properties"]["AccessLogSetting"]["DestinationArn"]
    assert destination == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert _resources("AWS::Logs::LogGroup")["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] == {
        "Ref": "LogRetentionDays"
    }


def test_the_scheduler_asynchronously_invoked_has_a_dead_letter_queue() -> None:
    scheduler = default_template()["Resources"]["SchedulerFunction"]["Properties"]
    assert scheduler["DeadLetterQueue"] == {
        "Type": "SQS",
        "TargetArn": {"Fn::GetAtt": ["SchedulerDLQ", "Arn"]},
    }


def _suppressions() -> list[tuple[str, dict[str, Any]]]:
    resources: dict[str, dict[str, Any]] = default_template()["Resources"]
    return [
        (logical_id, skip)
        for logical_id, resource in resources.items()
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
    ]


def test_every_checkov_suppression_says_why() -> None:
    unexplained = [
        f"{logical_id}: {skip.get('id')}"
        for logical_id, skip in _suppressions()
        if not skip.get("id", "").startswith("CKV_") or len(str(skip.get("comment", ""))) < 40
    ]
    assert unexplained == []


def test_a_resource_type_the_local_runtime_was_not_taught_is_refused(aws_credentials: None) -> None:
    template = {"Resources": {"Vpc": {"Type": "AWS::EC2::VPC", "Properties": {}}}}
    with mock_aws(), pytest.raises(UnknownResourceType, match=r"Vpc \(AWS::EC2::VPC\)"):
        create_stack(template, boto3.session.Session(region_name=REGION))


def test_the_local_assets_bucket_is_versioned_like_the_deployed_one(stack: CreatedStack) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.get_bucket_versioning(Bucket=stack.names["AssetsBucket"])["Status"] == "Enabled"
    assert "Status" not in s3.get_bucket_versioning(Bucket=stack.names["CacheBucket"])
