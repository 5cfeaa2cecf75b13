"""The ``tollgate`` command against the template's gateway in process (moto): admin tasks, a
batch run from a file (submitted, waited for while the worker runs from the real queue,
downloaded from presigned URLs), and the AWS bootstrap of the admin key."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import requests

from tests.conftest import Api, Tenant
from tests.integration.test_credits_api import balance_of, grant
from tests.integration.test_images_api import run_worker
from tollgate import services
from tollgate.aws.identity_store import admin_key_from_json
from tollgate.identity.keys import KeyHasher, parse_key
from tollgate.providers.imaging import image_info
from tollgate_local import cli
from tollgate_local.resources import REGION, CreatedStack

BASE = "http://tollgate.test"


def in_process(api: Api) -> httpx.Client:
    """An HTTP client whose API calls go to the in-process gateway and whose other calls (the
    presigned asset URLs) go to moto, as the network would take them."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host != "tollgate.test":
            fetched = requests.get(str(request.url), timeout=10)
            return httpx.Response(fetched.status_code, content=fetched.content)
        query: dict[str, list[str]] = {}
        for name, value in request.url.params.multi_items():
            query.setdefault(name, []).append(value)
        answer = api.gateway.handle(
            request.method, request.url.path, dict(request.headers), query, request.content
        )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

    return httpx.Client(base_url=BASE, transport=httpx.MockTransport(handle))


@pytest.fixture
def run(api: Api, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a ``tollgate`` command line with the given key; returns (exit status, stdout)."""

    def command(key: str, *argv: str) -> tuple[int, str]:
        monkeypatch.setattr(
            cli, "open_client", lambda args, admin: cli.Client(cli.Target(BASE, key), http=in_process(api))
        )
        out = io.StringIO()
        return cli.main(list(argv), stdout=out), out.getvalue()

    return command


def test_admin_tasks_make_an_org_a_key_and_a_grant(api: Api, admin_key: str, run: Any) -> None:
    status, out = run(admin_key, "orgs", "create", "Cli Org", "--plan", "pro")
    assert status == 0
    org_id = json.loads(out)["org_id"]
    status, out = run(admin_key, "keys", "create", org_id, "--user", "ann", "--role", "owner")
    assert status == 0
    key = json.loads(out)["key"]
    status, out = run(
        admin_key, "grants", "create", org_id, "12.3456", "--kind", "promo", "--note", "welcome"
    )
    assert status == 0
    assert json.loads(out, parse_float=Decimal)["amount"] == Decimal("12.3456")
    assert balance_of(api, admin_key, org_id) == Decimal("12.3456")
    status, out = run(key, "balance")
    assert (status, json.loads(out)["org_id"]) == (0, org_id)
    # a refusal is printed with its problem and exits 2
    assert run(key, "orgs", "create", "Not allowed")[0] == 2
    assert run(admin_key, "grants", "create", org_id, "1.23456", "--note", "too fine")[0] == 2


def test_generate_prints_the_answer(api: Api, admin_key: str, make_tenant: Any, run: Any) -> None:
    tenant: Tenant = make_tenant()
    grant(api, admin_key, tenant.org_id, 5)
    status, out = run(tenant.member_key, "generate", "Say hello", "--model", "mock/chat")
    assert status == 0
    assert out.startswith("Mock answer")


def test_images_batch_submits_waits_and_downloads_every_image(
    api: Api, admin_key: str, make_tenant: Any, stack: CreatedStack, tmp_path: Path
) -> None:
    # Given a file of three prompts and an org with credits
    tenant: Tenant = make_tenant()
    grant(api, admin_key, tenant.org_id, 5)
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"prompt": "one", "name": "one"}\n{"prompt": "two"}\n{"prompt": "three", "size": "512x512"}\n'
    )
    items = cli.read_batch_file(path, {"model": "mock/image", "size": "256x256"})
    client = cli.Client(cli.Target(BASE, tenant.member_key), http=in_process(api))
    stderr = io.StringIO()
    # When the batch runs, the worker taking the queue's messages while it waits
    status = cli.BatchRun(
        client, items, tmp_path / "out", poll_seconds=0, stderr=stderr, sleep=lambda _: run_worker(stack)
    ).run()
    # Then it exits 0 with every image downloaded, and it showed its progress
    assert status == 0, stderr.getvalue()
    sizes = {p.name: image_info(p.read_bytes()) for p in (tmp_path / "out").glob("*.png")}
    assert {name: (info.width if info else 0) for name, info in sizes.items()} == {
        "one.png": 256,
        "0002.png": 256,
        "0003.png": 512,
    }
    assert "3/3 done" in stderr.getvalue()
    # When the same file is run again
    again = cli.BatchRun(client, items, tmp_path / "again", poll_seconds=0, stderr=io.StringIO()).run()
    # Then the same batch is found (its Idempotency-Key), nothing is charged twice
    assert again == 0
    assert balance_of(api, admin_key, tenant.org_id) == 5 - 2 * Decimal("0.13") - Decimal("0.26")


def test_images_batch_exits_1_when_a_job_failed(
    api: Api, admin_key: str, make_tenant: Any, stack: CreatedStack, tmp_path: Path
) -> None:
    tenant: Tenant = make_tenant()
    grant(api, admin_key, tenant.org_id, 5)
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "fine"}\n{"prompt": "refused", "metadata": {"mock": {"fail": "invalid"}}}\n')
    items = cli.read_batch_file(path, {"model": "mock/image", "size": "256x256"})
    client = cli.Client(cli.Target(BASE, tenant.member_key), http=in_process(api))
    stderr = io.StringIO()
    status = cli.BatchRun(
        client, items, tmp_path / "out", poll_seconds=0, stderr=stderr, sleep=lambda _: run_worker(stack)
    ).run()
    assert status == 1
    assert "line 2" in stderr.getvalue()
    assert [p.name for p in (tmp_path / "out").glob("*.png")] == ["0001.png"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [entry["status"] for entry in manifest] == ["completed", "failed"]


def test_admin_bootstrap_sets_the_admin_key_parameter_from_the_pepper(stack: CreatedStack) -> None:
    # Given a deployed stage (the stack made from the template, stage dev)
    session = boto3.session.Session(region_name=REGION)
    # When the bootstrap runs
    plain = cli.bootstrap_admin("dev", force=False, session=session)
    # Then the parameter holds the key's id and HMAC under the stage's pepper, never the key
    stored = session.client("ssm").get_parameter(Name=stack.names["AdminKeyParameter"])["Parameter"]["Value"]
    assert plain not in stored
    record = admin_key_from_json(stored)
    assert record is not None
    pepper = services.identity_secrets().key_pepper()
    assert KeyHasher(pepper).matches(parse_key(plain), record.key_hash)
    # and a second run refuses to replace it, unless forced
    with pytest.raises(cli.CliError, match="--force"):
        cli.bootstrap_admin("dev", force=False, session=session)
    assert cli.bootstrap_admin("dev", force=True, session=session) != plain


def test_admin_seed_templates_loads_the_starters_once(stack: CreatedStack) -> None:
    # Given a deployed table (by name) with no templates in it
    table = stack.names["TollgateTable"]
    out = io.StringIO()
    # When the seeding runs twice
    assert cli.main(["admin", "seed-templates", "--table", table, "--region", REGION], stdout=out) == 0
    first = dict(line.split(": ") for line in out.getvalue().splitlines())
    again = io.StringIO()
    assert cli.main(["admin", "seed-templates", "--table", table, "--region", REGION], stdout=again) == 0
    second = dict(line.split(": ") for line in again.getvalue().splitlines())
    # Then every starter was created the first time, and nothing changed the second
    assert first
    assert set(first.values()) == {"created"}
    assert second == dict.fromkeys(first, "unchanged")
