"""Fixtures shared by the three layers of tests.

- unit: no AWS at all.
- integration: moto in-process; every resource made from ``template.yaml``; handlers called
  through ``tollgate_local.gateway.Gateway`` with the authorizer, as API Gateway would.
- e2e: HTTP against the local runtime (moto server), see ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.loaders
import botocore.session
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from tollgate import services
from tollgate.aws.identity_store import admin_key_to_json
from tollgate.identity.keys import KeyHasher
from tollgate.identity.models import Role
from tollgate.identity.service import issue_admin_key
from tollgate_local.gateway import ApiDefinition, Gateway
from tollgate_local.invoke import in_process_invoker
from tollgate_local.resources import REGION, CreatedStack, create_stack
from tollgate_local.template import default_template, function_environment, function_ids

EVENTS = Path(__file__).resolve().parents[1] / "events"

# Every test makes fresh boto3 sessions (the services' clients, Powertools' parameter providers,
# moto), and each botocore session would parse the AWS SDK's JSON models again: about a second
# per test. One loader for every session of the test process parses each file once; the models
# are read-only data, so sharing them changes nothing else.
_SHARED_DATA_LOADER = botocore.loaders.create_loader()


def _register_shared_data_loader(session: botocore.session.Session) -> None:
    session._components.lazy_register_component("data_loader", lambda: _SHARED_DATA_LOADER)


botocore.session.Session._register_data_loader = _register_shared_data_loader  # type: ignore[method-assign]


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def set_test_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and the region; no endpoint or profile of the machine leaks in."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    set_test_aws_environment(monkeypatch)


def _reset_caches() -> None:
    services.reset()
    parameters.clear_caches()


@contextmanager
def moto_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[CreatedStack]:
    """Every resource of template.yaml in moto (in process), and the functions' environment in
    os.environ, for as long as the context lasts (a test, or a module sharing one stack)."""
    set_test_aws_environment(monkeypatch)
    template = default_template()
    with mock_aws():
        created = create_stack(template, boto3.session.Session(region_name=REGION))
        for function_id in function_ids(template):
            for name, value in function_environment(template, function_id, created.resolver).items():
                if name != "POWERTOOLS_SERVICE_NAME":
                    monkeypatch.setenv(name, value)
        _reset_caches()
        try:
            yield created
        finally:
            _reset_caches()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[CreatedStack]:
    """Every resource of template.yaml in moto, and the functions' environment in os.environ."""
    with moto_stack(monkeypatch) as created:
        yield created


def install_admin_key(stack: CreatedStack) -> str:
    """A bootstrap admin key, stored (as its HMAC) in the template's SSM parameter."""
    secrets = services.identity_secrets()
    plain, record = issue_admin_key(KeyHasher(secrets.key_pepper()))
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=stack.names["AdminKeyParameter"], Value=admin_key_to_json(record), Overwrite=True, Type="String"
    )
    parameters.clear_caches()
    return plain.value


@pytest.fixture
def admin_key(stack: CreatedStack) -> str:
    """The bootstrap admin key, stored (as its HMAC) in the template's SSM parameter."""
    return install_admin_key(stack)


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


class Api:
    """Calls the API in-process, through the template's gateway and authorizer."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def request(
        self,
        method: str,
        url: str,
        *,
        key: str | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApiResponse:
        parts = urlsplit(url)
        sent = {"Host": "127.0.0.1", "User-Agent": "pytest"}
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        result = self.gateway.handle(method, parts.path, sent, parse_qs(parts.query), body or b"")
        return ApiResponse(result.status, result.headers, result.body)

    def get(self, url: str, **kwargs: Any) -> ApiResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> ApiResponse:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> ApiResponse:
        return self.request("DELETE", url, **kwargs)


def gateway_api(stack: CreatedStack) -> Api:
    """The template's API in process, with its own authorizer cache."""
    template = default_template()
    return Api(Gateway(ApiDefinition.from_template(template, stack.resolver), in_process_invoker(template)))


@pytest.fixture
def api(stack: CreatedStack) -> Api:
    return gateway_api(stack)


@dataclass
class Tenant:
    org_id: str
    owner_key: str
    member_key: str


def create_tenant(api: Api, admin_key: str, name: str = "Acme", plan: str = "starter") -> Tenant:
    """An org made through the API, with an owner key and a member key."""
    org = api.post("/v1/orgs", key=admin_key, json_body={"name": name, "plan": plan})
    assert org.status == 201, org.body
    org_id = org.json()["org_id"]
    keys = {}
    for role in (Role.OWNER, Role.MEMBER):
        made = api.post(
            f"/v1/orgs/{org_id}/keys",
            key=admin_key,
            json_body={"name": f"{role.value} key", "user": f"{role.value}-1", "role": role.value},
        )
        assert made.status == 201, made.body
        keys[role] = made.json()["key"]
    return Tenant(org_id=org_id, owner_key=keys[Role.OWNER], member_key=keys[Role.MEMBER])


@pytest.fixture
def make_tenant(api: Api, admin_key: str) -> Any:
    """Create an org through the API, with an owner key and a member key."""

    def make(name: str = "Acme", plan: str = "starter") -> Tenant:
        return create_tenant(api, admin_key, name, plan)

    return make


def alerts_to_queue(stack: CreatedStack) -> str:
    """A queue receiving every alert published on the template's alerts bus (to read them)."""
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="alerts-test")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = stack.names["AlertsBus"]
    pattern = json.dumps({"source": ["tollgate.credits"]})
    events.put_rule(Name="alerts-to-queue", EventBusName=bus, EventPattern=pattern)
    events.put_targets(Rule="alerts-to-queue", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    return str(url)


def drain_queue(queue_url: str) -> list[dict[str, Any]]:
    """Every message body now on the queue, parsed, and deleted."""
    sqs = boto3.client("sqs", region_name=REGION)
    found: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
