"""The authorization matrix (S2, OWASP API1): every operation that takes an id, called with
the real ids of org A's resources by everyone who must be refused, through the template's
gateway and authorizer (moto, in process).

- another org's owner: ``404`` (no existence leak), on every operation;
- a member of org A: ``403`` where the operation needs an owner (or the admin), ``404`` where
  the resource is another user's (a member sees only its own requests, jobs, keys and
  conversations); operations a member may do on its org's resources are declared ``MAY``;
- a revoked key of org A and no key at all: ``401``, from the gateway.

Every refusal is problem JSON, and nothing changed: every table item, every S3 object and
every queue's depth are the same before and after. The one write a refusal may make is the
authorizer's coarse last-used touch of the calling key itself (``last_used_at`` on that key's
item, at most once per ``KEY_LAST_USED_RESOLUTION_SECONDS``); it is excluded for that item
only, never for org A's resources.

The operations come from ``template.yaml``: a route with a ``{...}`` path parameter that is not
declared in ``PATH_OPERATIONS`` fails ``test_every_route_with_an_id_is_declared`` (and its own
cases), so a new route is covered or the suite is red. Operations naming an id in the body or
the query (``org_id=``) are declared in ``NAMED_OPERATIONS``. One stack and one set of resources
serve the whole module (it is read-only by design: each case proves it changed nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from tests.conftest import Api, ApiResponse, Tenant, create_tenant, gateway_api, install_admin_key, moto_stack
from tests.integration.test_credits_api import assert_problem, grant
from tests.integration.test_images_api import run_worker
from tollgate.identity.keys import parse_key
from tollgate_local.resources import REGION, CreatedStack
from tollgate_local.template import default_template, function_ids, function_properties

MAY = None  # a member of org A may do this on its org's resource: not a refusal to test


@dataclass(frozen=True)
class Operation:
    """How to call one operation with org A's ids, and what a member of A gets."""

    member: int | None  # 403, 404, or MAY
    body: Callable[[World], Any] | None = None


@dataclass
class World:
    """Org A with one of each resource (made by its owner), org B, and the keys that call."""

    stack: CreatedStack
    api: Api
    a: Tenant
    b: Tenant
    revoked_key: str
    ids: dict[str, str]  # path parameter -> org A's id
    asset_url: str

    def path(self, template_path: str) -> str:
        return template_path.format(**self.ids)


def _version_body(world: World) -> dict[str, Any]:
    return {"variables": {"who": "Ann"}}


PATH_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/v1/orgs/{org_id}"): Operation(member=MAY),
    ("PATCH", "/v1/orgs/{org_id}"): Operation(member=403, body=lambda w: {"name": "Taken over"}),
    ("POST", "/v1/orgs/{org_id}/keys"): Operation(
        member=403, body=lambda w: {"name": "intruder", "user": "mallory", "role": "owner"}
    ),
    ("DELETE", "/v1/keys/{key_id}"): Operation(member=404),
    ("POST", "/v1/keys/{key_id}/rotate"): Operation(member=404, body=lambda w: {"grace_seconds": 0}),
    ("GET", "/v1/credits/purchases/{purchase_id}"): Operation(member=403),
    ("POST", "/v1/credits/purchases/{purchase_id}/complete"): Operation(member=403),
    ("POST", "/v1/credits/purchases/{purchase_id}/fail"): Operation(member=403),
    ("POST", "/v1/credits/purchases/{purchase_id}/refund"): Operation(member=403),
    ("POST", "/v1/orgs/{org_id}/credits/grants"): Operation(
        member=403, body=lambda w: {"amount": 5, "kind": "grant", "note": "to myself"}
    ),
    ("GET", "/v1/requests/{request_id}"): Operation(member=404),
    ("POST", "/v1/requests/{request_id}/regenerate"): Operation(member=404),
    ("POST", "/v1/requests/{request_id}/rating"): Operation(member=404, body=lambda w: {"score": 1}),
    ("POST", "/v1/templates/{template_id}/generate"): Operation(member=MAY, body=_version_body),
    ("GET", "/v1/conversations/{conversation_id}"): Operation(member=404),
    ("DELETE", "/v1/conversations/{conversation_id}"): Operation(member=404),
    ("POST", "/v1/conversations/{conversation_id}/messages"): Operation(
        member=404, body=lambda w: {"content": "What did my owner say?"}
    ),
    ("GET", "/v1/images/{job_id}"): Operation(member=404),
    ("GET", "/v1/images/batches/{batch_id}"): Operation(member=404),
    ("GET", "/v1/templates/{template_id}"): Operation(member=MAY),
    ("PUT", "/v1/templates/{template_id}"): Operation(member=403, body=lambda w: {"name": "Defaced"}),
    ("DELETE", "/v1/templates/{template_id}"): Operation(member=403),
    ("GET", "/v1/templates/{template_id}/versions/{version}"): Operation(member=MAY),
    ("POST", "/v1/templates/{template_id}/render"): Operation(member=MAY, body=_version_body),
}

# Operations naming one of org A's resources in the body or the query rather than the path.
NAMED_OPERATIONS: dict[str, tuple[str, str, Operation]] = {
    "analyze org A's job": (
        "POST",
        "/v1/images/analyze",
        Operation(member=404, body=lambda w: {"job_id": w.ids["job_id"]}),
    ),
    "analyze org A's asset by URL": (
        "POST",
        "/v1/images/analyze",
        Operation(member=MAY, body=lambda w: {"url": w.asset_url}),
    ),
    "generate from org A's private template": (
        "POST",
        "/v1/generate",
        Operation(member=MAY, body=lambda w: {"template_id": w.ids["template_id"], **_version_body(w)}),
    ),
    "buy credits for org A": (
        "POST",
        "/v1/credits/purchases",
        Operation(member=403, body=lambda w: {"package": "growth_pack", "org_id": w.ids["org_id"]}),
    ),
    **{
        f"read org A's {what}": (
            "GET",
            f"{path}{'&' if '?' in path else '?'}org_id={{org_id}}",
            Operation(member=MAY),
        )
        for what, path in {
            "keys": "/v1/keys",
            "balance": "/v1/credits/balance",
            "transactions": "/v1/credits/transactions",
            "availability": "/v1/credits/availability?feature=chat",
            "alerts": "/v1/credits/alerts",
            "limits": "/v1/limits",
            "usage": "/v1/usage",
            "usage logs": "/v1/usage/logs",
            "dashboard": "/v1/analytics/dashboard",
        }.items()
    },
    "read org A's purchase naming the org": (
        "GET",
        "/v1/credits/purchases/{purchase_id}?org_id={org_id}",
        Operation(member=403),
    ),
}


def id_routes() -> list[tuple[str, str]]:
    """Every API route of template.yaml with a path parameter, as (method, path)."""
    template = default_template()
    found = set()
    for function_id in function_ids(template):
        for event in (function_properties(template, function_id).get("Events") or {}).values():
            properties = event.get("Properties") or {}
            if event.get("Type") == "Api" and "{" in str(properties.get("Path", "")):
                found.add((str(properties["Method"]).upper(), str(properties["Path"])))
    return sorted(found, key=lambda route: (route[1], route[0]))


# -- the world -------------------------------------------------------------------------------------


def _created(response: ApiResponse, status: int = 201) -> dict[str, Any]:
    assert response.status == status, response.body
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with pytest.MonkeyPatch.context() as monkeypatch, moto_stack(monkeypatch) as stack:
        api = gateway_api(stack)
        admin_key = install_admin_key(stack)
        a, b = create_tenant(api, admin_key, "Org A"), create_tenant(api, admin_key, "Org B")
        for tenant in (a, b):
            assert grant(api, admin_key, tenant.org_id, 100).status == 201
        owner = a.owner_key
        spare_key = _created(
            api.post(
                f"/v1/orgs/{a.org_id}/keys",
                key=owner,
                json_body={"name": "deploy key", "user": "owner-1", "role": "owner"},
            )
        )
        # A key of org A revoked before it is ever used (the gateway caches allowed keys).
        leaver = _created(
            api.post(
                f"/v1/orgs/{a.org_id}/keys",
                key=owner,
                json_body={"name": "leaver", "user": "member-9", "role": "member"},
            )
        )
        assert api.delete(f"/v1/keys/{leaver['key_id']}", key=owner).status == 200
        chat = {"model": "mock/chat", "messages": [{"role": "user", "content": "Owner's secret plan"}]}
        answered = api.post("/v1/chat/completions", key=owner, json_body=chat)
        assert answered.status == 200, answered.body
        image = {"model": "mock/image", "size": "256x256"}
        job = _created(api.post("/v1/images", key=owner, json_body={**image, "prompt": "A logo"}), 202)
        batch = _created(
            api.post("/v1/images/batch", key=owner, json_body={"items": [{**image, "prompt": "A badge"}]}),
            202,
        )
        template = _created(
            api.post(
                "/v1/templates",
                key=owner,
                json_body={
                    "name": "Private greeting",
                    "body": "Say hello to {{ who }}.",
                    "variables": [{"name": "who", "max_length": 20}],
                    "params": {"model": "mock/chat", "max_tokens": 20},
                },
            )
        )
        conversation = _created(api.post("/v1/conversations", key=owner, json_body={"model": "mock/chat"}))
        purchase = _created(
            api.post("/v1/credits/purchases", key=owner, json_body={"package": "growth_pack"})
        )
        assert run_worker(stack) == 2
        done = _created(api.get(f"/v1/images/{job['id']}", key=owner), 200)
        assert done["status"] == "completed", done
        yield World(
            stack=stack,
            api=api,
            a=a,
            b=b,
            revoked_key=leaver["key"],
            ids={
                "org_id": a.org_id,
                "key_id": spare_key["key_id"],
                "purchase_id": purchase["purchase_id"],
                "request_id": str(answered.header("X-Request-Id")),
                "template_id": template["id"],
                "version": "1",
                "conversation_id": conversation["id"],
                "job_id": job["id"],
                "batch_id": batch["id"],
            },
            asset_url=done["url"],
        )


# -- the store, before and after -------------------------------------------------------------------


def store_snapshot(stack: CreatedStack, calling_key: str | None) -> dict[str, Any]:
    """Every table item, S3 object (key and ETag) and queue depth; ``last_used_at`` of the
    calling key's own item left out (the authorizer's coarse touch, see the module doc)."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    touched = f"KEY#{parse_key(calling_key).key_id}" if calling_key else None
    items: dict[tuple[str, str], Any] = {}
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for item in page["Items"]:
                if touched is not None and item.get("pk", {}).get("S") == touched:
                    item = {name: value for name, value in item.items() if name != "last_used_at"}
                items[
                    (
                        table,
                        repr(sorted((item.get("pk") or {}).items()) + sorted((item.get("sk") or {}).items())),
                    )
                ] = item
    s3 = boto3.client("s3", region_name=REGION)
    objects = {}
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for entry in page.get("Contents") or []:
                objects[(bucket["Name"], entry["Key"])] = entry["ETag"]
    sqs = boto3.client("sqs", region_name=REGION)
    queues = {
        url: sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        for url in sqs.list_queues().get("QueueUrls") or []
    }
    return {"items": items, "objects": objects, "queues": queues}


def assert_refused_and_nothing_changed(
    world: World, method: str, path: str, operation: Operation, key: str | None, status: int
) -> None:
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}[status]
    before = store_snapshot(world.stack, key)
    body = operation.body(world) if operation.body else None
    response = world.api.request(method, path, key=key, json_body=body)
    assert_problem(response, status, code)
    after = store_snapshot(world.stack, key)
    changed = sorted(
        k
        for k in before["items"].keys() | after["items"].keys()
        if before["items"].get(k) != after["items"].get(k)
    )
    assert changed == [], f"{method} {path} changed items {changed}"
    assert after["objects"] == before["objects"]
    assert after["queues"] == before["queues"]


# -- the cases -------------------------------------------------------------------------------------

CALLERS: dict[str, Callable[[World], str | None]] = {
    "another org's owner": lambda w: w.b.owner_key,
    "a member of org A": lambda w: w.a.member_key,
    "a revoked key of org A": lambda w: w.revoked_key,
    "no key": lambda w: None,
}


def _expected(caller: str, operation: Operation) -> int | None:
    if caller == "another org's owner":
        return 404
    if caller == "a member of org A":
        return operation.member
    return 401


def _path_cases() -> list[Any]:
    cases = []
    for method, path in id_routes():
        declared = PATH_OPERATIONS.get((method, path))
        for caller in CALLERS:
            if declared is not None and _expected(caller, declared) is MAY:
                continue
            cases.append(pytest.param(method, path, caller, id=f"{method} {path} by {caller}"))
    return cases


def _named_cases() -> list[Any]:
    return [
        pytest.param(name, caller, id=f"{name} by {caller}")
        for name, (_, _, operation) in NAMED_OPERATIONS.items()
        for caller in CALLERS
        if _expected(caller, operation) is not MAY
    ]


def test_every_route_with_an_id_is_declared() -> None:
    routes = set(id_routes())
    assert routes - PATH_OPERATIONS.keys() == set(), "declare these routes in PATH_OPERATIONS"
    assert PATH_OPERATIONS.keys() - routes == set(), "these declared routes are gone from template.yaml"


@pytest.mark.parametrize(("method", "path", "caller"), _path_cases())
def test_an_id_in_the_path_is_refused(world: World, method: str, path: str, caller: str) -> None:
    operation = PATH_OPERATIONS.get((method, path))
    assert operation is not None, f"{method} {path} is not declared in PATH_OPERATIONS"
    status = _expected(caller, operation)
    assert status is not None
    assert_refused_and_nothing_changed(
        world, method, world.path(path), operation, CALLERS[caller](world), status
    )


@pytest.mark.parametrize(("name", "caller"), _named_cases())
def test_an_id_in_the_body_or_the_query_is_refused(world: World, name: str, caller: str) -> None:
    method, path, operation = NAMED_OPERATIONS[name]
    status = _expected(caller, operation)
    assert status is not None
    assert_refused_and_nothing_changed(
        world, method, world.path(path), operation, CALLERS[caller](world), status
    )


def test_the_owner_reaches_every_resource_the_matrix_uses(world: World) -> None:
    """The refusals above are about who calls: org A's owner reads each of the same ids."""
    owner = world.a.owner_key
    for path in (
        "/v1/orgs/{org_id}",
        "/v1/credits/purchases/{purchase_id}",
        "/v1/requests/{request_id}",
        "/v1/conversations/{conversation_id}",
        "/v1/images/{job_id}",
        "/v1/images/batches/{batch_id}",
        "/v1/templates/{template_id}",
        "/v1/templates/{template_id}/versions/{version}",
    ):
        assert world.api.get(world.path(path), key=owner).status == 200, path
    keys = world.api.get("/v1/keys", key=owner).json()["items"]
    assert world.ids["key_id"] in [k["key_id"] for k in keys]


def test_the_snapshot_sees_a_write_an_allowed_caller_makes(world: World) -> None:
    """The 'nothing changed' check can fail: the owner rating its request shows up in it."""
    owner = world.a.owner_key
    before = store_snapshot(world.stack, owner)
    rated = world.api.post(world.path("/v1/requests/{request_id}/rating"), key=owner, json_body={"score": 5})
    assert rated.status == 200, rated.body
    assert store_snapshot(world.stack, owner)["items"] != before["items"]


def test_what_a_member_may_do_it_does(world: World) -> None:
    """Each operation declared ``MAY`` for a member is answered for that member (so the
    declaration is true, and the refusals above are about who calls)."""
    allowed = [(m, p, op) for (m, p), op in PATH_OPERATIONS.items() if op.member is MAY]
    allowed += [entry for entry in NAMED_OPERATIONS.values() if entry[2].member is MAY]
    for method, path, operation in allowed:
        body = operation.body(world) if operation.body else None
        response = world.api.request(method, world.path(path), key=world.a.member_key, json_body=body)
        assert response.status < 300, (method, path, response.body)
