"""Templates and conversations against the real local runtime (HTTP, moto server): the starter
templates are there from the start, a template generates at its declared price, the
deploy-time seeding step is idempotent, and a conversation keeps going."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PYTHONPATH, LocalRuntime, Tenant, bearer
from tollgate.templates.starter import load_starters
from tollgate_local.template import REPO_ROOT

pytestmark = pytest.mark.e2e

PRODUCT = "tpl_starter-product-description"
PHOTO = "tpl_starter-listing-photo"


@pytest.fixture(scope="module")
def tenant(http: httpx.Client, runtime: LocalRuntime, make_tenant: Any) -> Tenant:
    """An org of its own with 20 credits."""
    made: Tenant = make_tenant("Template users")
    granted = http.post(
        f"/v1/orgs/{made.org_id}/credits/grants",
        json={"amount": 20, "kind": "grant", "note": "e2e templates"},
        headers={**bearer(runtime.admin_key), "Idempotency-Key": f"e2e-templates-{uuid.uuid4()}"},
    )
    assert granted.status_code == 201, granted.text
    return made


def balance(http: httpx.Client, key: str) -> Decimal:
    response = http.get("/v1/credits/balance", headers=bearer(key))
    assert response.status_code == 200, response.text
    return Decimal(str(json.loads(response.text, parse_float=Decimal)["balance"]))


def test_the_starter_templates_are_there_from_the_start(http: httpx.Client, runtime: LocalRuntime) -> None:
    listed = http.get("/v1/templates?visibility=public&limit=100", headers=bearer(runtime.demo_key))
    assert listed.status_code == 200, listed.text
    versions = {t["id"]: (t["version"], t["kind"]) for t in listed.json()["data"]}
    assert versions[PRODUCT] == (1, "text")
    assert versions[PHOTO] == (1, "image")
    assert set(versions) >= {s.template_id for s in load_starters()}


def test_a_template_generates_at_its_declared_price(http: httpx.Client, tenant: Tenant) -> None:
    # Given the product description starter, priced 0.2 credit a call
    before = balance(http, tenant.owner_key)
    # When a member generates from it (a product the cache has never seen)
    variables = {"product_name": f"Stoneware mug {uuid.uuid4().hex[:6]}", "features": ["350 ml", "oven safe"]}
    response = http.post(
        f"/v1/templates/{PRODUCT}/generate",
        json={"variables": variables, "model": "mock/chat"},
        headers=bearer(tenant.member_key),
    )
    # Then the record names the template and its version, and the org paid exactly 0.2 credit
    assert response.status_code == 200, response.text
    record = response.json()
    assert (record["template_id"], record["template_version"], record["feature"]) == (
        PRODUCT,
        1,
        "product_description",
    )
    assert variables["product_name"] in record["prompt"][0]["content"]
    assert Decimal(response.headers["x-credits-charged"]) == Decimal("0.2")
    assert balance(http, tenant.owner_key) == before - Decimal("0.2")
    # And the use was counted
    template = http.get(f"/v1/templates/{PRODUCT}", headers=bearer(tenant.member_key)).json()
    assert template["usage_count"] >= 1


def test_the_listing_photo_renders_from_the_listing_context(http: httpx.Client, tenant: Tenant) -> None:
    context = {"title": "Sunny loft by the canal", "property_type": "loft", "location": "Le Marais, Paris"}
    rendered = http.post(
        f"/v1/templates/{PHOTO}/render", json={"variables": context}, headers=bearer(tenant.member_key)
    )
    assert rendered.status_code == 200, rendered.text
    body = rendered.json()
    assert body["kind"] == "image"
    assert "loft in Le Marais, Paris" in body["prompt"]
    assert body["params"]["size"] == "1024x1024"


def test_the_deploy_time_seeding_step_changes_nothing_when_run_again(runtime: LocalRuntime) -> None:
    # Given the runtime's table (seeded at start)
    tables = runtime.aws("dynamodb").list_tables()["TableNames"]
    (table,) = [name for name in tables if "tollgatetable" in name.lower()]
    # When the deploy-time command runs against it
    env = {
        **os.environ,
        "PYTHONPATH": PYTHONPATH,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tollgate_local.seed_templates",
            "--table",
            table,
            "--endpoint-url",
            runtime.moto_endpoint,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then every starter is reported unchanged
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ") for line in done.stdout.strip().splitlines())
    assert lines == {s.template_id: "unchanged" for s in load_starters()}


def test_a_conversation_keeps_going_on_a_small_model(http: httpx.Client, tenant: Tenant) -> None:
    created = http.post(
        "/v1/conversations",
        json={"model": "mock/chat-small", "system": "Be brief."},
        headers=bearer(tenant.member_key),
    )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    before = balance(http, tenant.owner_key)
    charged = Decimal(0)
    for number in range(10):
        turn = http.post(
            f"/v1/conversations/{cid}/messages",
            json={"content": f"Turn {number} ({uuid.uuid4().hex[:6]}): tell me about bridges and tolls."},
            headers=bearer(tenant.member_key),
        )
        assert turn.status_code == 201, turn.text
        charged += Decimal(turn.headers["x-credits-charged"])
    last = turn.json()
    assert last["message_count"] == 20
    assert last["history_dropped"] > 0
    assert balance(http, tenant.owner_key) == before - charged
    shown = http.get(f"/v1/conversations/{cid}?limit=500", headers=bearer(tenant.member_key)).json()
    assert [m["role"] for m in shown["messages"]] == ["user", "assistant"] * 10
    other = http.get(f"/v1/conversations/{cid}", headers=bearer(tenant.owner_key))
    assert other.status_code == 200
