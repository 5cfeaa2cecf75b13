"""Creates, in moto (in-process or server), every resource ``template.yaml`` declares.

Used by the local runtime and by the tests, so neither has a second definition of a table,
queue or bucket. Returns a ``Resolver`` that knows each resource's physical name and ARN, with
which function environments are resolved.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tollgate_local.template import Resolver, TableDefinition, parameter_defaults

REGION = "us-east-1"
ACCOUNT = "123456789012"
_NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::SSM::Parameter": "Name",
    "AWS::Events::EventBus": "Name",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Serverless::Function": "FunctionName",
}
# What create_stack makes in moto, and what it knowingly leaves out: functions, the layer and the
# API are run by the local runtime itself; the rest only matter in AWS (permissions, log
# storage, API Gateway's logging role, a TLS-only bucket policy that moto's endpoint over plain
# HTTP could not honour). A type in neither set is an error, so a new one is decided on here.
CREATED_TYPES = frozenset(
    {
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::S3::Bucket",
        "AWS::SecretsManager::Secret",
        "AWS::SSM::Parameter",
        "AWS::Events::EventBus",
        "AWS::SNS::Topic",
    }
)
NOT_CREATED_TYPES = frozenset(
    {
        "AWS::Serverless::Function",
        "AWS::Serverless::LayerVersion",
        "AWS::Serverless::Api",
        "AWS::Logs::LogGroup",
        "AWS::S3::BucketPolicy",
        "AWS::IAM::Role",
        "AWS::ApiGateway::Account",
    }
)


class UnknownResourceType(ValueError):
    """The template declares a resource type the local runtime has not been taught."""


@dataclass
class CreatedStack:
    """What was created: the resolver for intrinsics, and physical names by logical id."""

    resolver: Resolver
    names: dict[str, str]


def _physical_name(logical_id: str, resource: Mapping[str, Any], resolver: Resolver, stack: str) -> str:
    prop = _NAME_PROPERTY.get(str(resource.get("Type")))
    props = resource.get("Properties") or {}
    if prop and props.get(prop):
        return str(resolver.resolve(props[prop]))
    suffix = logical_id.lower()
    return f"{stack}-{suffix}"


def _generated_secret(spec: Mapping[str, Any]) -> str:
    length = int(spec.get("PasswordLength", 32))
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&*+-.:=?@^_~"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def create_stack(
    template: Mapping[str, Any],
    session: Any,
    *,
    stack_name: str = "tollgate-local",
    parameters: Mapping[str, str] | None = None,
) -> CreatedStack:
    """Create every table, queue, bucket, secret, parameter and bus of the template."""
    params = parameter_defaults(template, parameters)
    resolver = Resolver(
        refs={
            **params,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
            "AWS::Partition": "aws",
            "AWS::NoValue": None,
        }
    )
    resources: dict[str, dict[str, Any]] = template.get("Resources") or {}
    unknown = sorted(
        f"{logical_id} ({resource.get('Type')})"
        for logical_id, resource in resources.items()
        if resource.get("Type") not in CREATED_TYPES | NOT_CREATED_TYPES
    )
    if unknown:
        raise UnknownResourceType(
            "the local runtime neither creates nor knowingly skips: " + ", ".join(unknown)
        )
    names: dict[str, str] = {}
    for logical_id, resource in resources.items():
        name = _physical_name(logical_id, resource, resolver, stack_name)
        names[logical_id] = name
        kind = resource.get("Type")
        arn = _arn(kind, name)
        resolver.refs[logical_id] = name if kind not in ("AWS::SNS::Topic",) else arn
        resolver.attributes[(logical_id, "Arn")] = arn
        if kind == "AWS::SQS::Queue":
            resolver.refs[logical_id] = f"http://sqs.{REGION}.localhost/{ACCOUNT}/{name}"
            resolver.attributes[(logical_id, "QueueName")] = name
            resolver.attributes[(logical_id, "QueueUrl")] = resolver.refs[logical_id]
        if kind == "AWS::S3::Bucket":
            resolver.attributes[(logical_id, "DomainName")] = f"{name}.s3.amazonaws.com"
        if kind == "AWS::DynamoDB::Table":
            resolver.attributes[(logical_id, "StreamArn")] = arn + "/stream/local"

    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        props = resource.get("Properties") or {}
        name = names[logical_id]
        if kind == "AWS::DynamoDB::Table":
            _create_table(session, TableDefinition(logical_id, resolver.resolve(props)), name)
        elif kind == "AWS::SQS::Queue":
            url = session.client("sqs", region_name=REGION).create_queue(QueueName=name)["QueueUrl"]
            resolver.refs[logical_id] = url
            resolver.attributes[(logical_id, "QueueUrl")] = url
        elif kind == "AWS::S3::Bucket":
            s3 = session.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=name)
            versioning = (props.get("VersioningConfiguration") or {}).get("Status")
            if versioning:
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": str(versioning)})
        elif kind == "AWS::SecretsManager::Secret":
            value = props.get("SecretString")
            value = (
                resolver.resolve(value)
                if value
                else _generated_secret(props.get("GenerateSecretString") or {})
            )
            created = session.client("secretsmanager", region_name=REGION).create_secret(
                Name=name, SecretString=value
            )
            resolver.refs[logical_id] = created["ARN"]
            resolver.attributes[(logical_id, "Arn")] = created["ARN"]
        elif kind == "AWS::SSM::Parameter":
            session.client("ssm", region_name=REGION).put_parameter(
                Name=name,
                Value=str(resolver.resolve(props.get("Value", ""))),
                Type=props.get("Type", "String"),
                Overwrite=True,
            )
        elif kind == "AWS::Events::EventBus":
            session.client("events", region_name=REGION).create_event_bus(Name=name)
        elif kind == "AWS::SNS::Topic":
            topic = session.client("sns", region_name=REGION).create_topic(Name=name)
            resolver.refs[logical_id] = topic["TopicArn"]

    # Queue attributes last: a redrive policy names another queue's ARN.
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::SQS::Queue":
            continue
        props = resolver.resolve(resource.get("Properties") or {})
        attributes = {
            key: (json.dumps(value) if isinstance(value, dict) else str(value))
            for key, value in props.items()
            if key
            in {
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "RedrivePolicy",
                "DelaySeconds",
                "ReceiveMessageWaitTimeSeconds",
                "MaximumMessageSize",
            }
        }
        if attributes:
            session.client("sqs", region_name=REGION).set_queue_attributes(
                QueueUrl=resolver.refs[logical_id], Attributes=attributes
            )
    return CreatedStack(resolver=resolver, names=names)


def _arn(kind: Any, name: str) -> str:
    service = {
        "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
        "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
        "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
        "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}",
        "AWS::SSM::Parameter": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}",
        "AWS::Events::EventBus": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}",
        "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
        "AWS::Serverless::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        "AWS::Serverless::LayerVersion": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}:1",
    }
    return service.get(str(kind), f"arn:aws:local:{REGION}:{ACCOUNT}:{name}")


def _create_table(session: Any, definition: TableDefinition, name: str) -> None:
    client = session.client("dynamodb", region_name=REGION)
    client.create_table(**definition.create_table_kwargs(name))
    if definition.ttl_attribute:
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": definition.ttl_attribute},
        )
