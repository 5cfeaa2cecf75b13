"""Images end to end on the local runtime (S7, S10): a job goes through the real queue to the
worker function's own process, its presigned URL downloads from the moto server, the balance
drops by exactly the price; a batch shows its progress while it runs; a failing job ends in the
DLQ; the ``tollgate images batch`` command downloads every image and exits 0; the official
``openai`` SDK's ``images.generate`` works."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.e2e.conftest import PYTHONPATH, LocalRuntime, Tenant, bearer
from tollgate.images.colors import decode_png
from tollgate.providers.imaging import image_info
from tollgate_local.template import REPO_ROOT

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 60
SMALL_PRICE = Decimal("0.13")  # a 256x256 mock image: $0.001 x 1.3 at $0.01 per credit
MEDIUM_PRICE = Decimal("0.26")  # 512x512: $0.002 x 1.3


def balance(http: httpx.Client, key: str) -> Decimal:
    response = http.get("/v1/credits/balance", headers=bearer(key))
    assert response.status_code == 200, response.text
    return Decimal(str(json.loads(response.text, parse_float=Decimal)["balance"]))


@pytest.fixture
def tenant(http: httpx.Client, runtime: LocalRuntime, make_tenant: Any) -> Tenant:
    """A new org with 10 credits (its own hourly image limit, its own balance)."""
    made: Tenant = make_tenant(f"Images {uuid.uuid4().hex[:6]}")
    granted = http.post(
        f"/v1/orgs/{made.org_id}/credits/grants",
        json={"amount": 10, "kind": "grant", "note": "e2e images"},
        headers=bearer(runtime.admin_key),
    )
    assert granted.status_code == 201, granted.text
    return made


def wait_for(
    http: httpx.Client, path: str, key: str, done: Any, seen: list[dict[str, Any]] | None = None
) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        response = http.get(path, headers=bearer(key))
        assert response.status_code == 200, response.text
        body = response.json()
        if seen is not None:
            seen.append(body)
        if done(body):
            return body
        time.sleep(0.1)
    pytest.fail(f"{path} did not finish within {WAIT_SECONDS} s: {body}")


def test_a_job_runs_from_the_queue_and_its_url_downloads_a_png_of_that_size(
    http: httpx.Client, tenant: Tenant
) -> None:
    # Given 10 credits
    before = balance(http, tenant.member_key)
    # When a 512x512 image is asked for
    submitted = http.post(
        "/v1/images",
        json={"model": "mock/image", "prompt": f"A harbour at night {uuid.uuid4()}", "size": "512x512"},
        headers=bearer(tenant.member_key),
    )
    assert submitted.status_code == 202, submitted.text
    assert submitted.json()["status"] == "pending"
    # Then the worker runs it from the queue, and GET shows it completed
    job = wait_for(
        http,
        f"/v1/images/{submitted.json()['id']}",
        tenant.member_key,
        lambda j: j["status"] != "pending" and j["status"] != "processing",
    )
    assert job["status"] == "completed", job
    # and its URL downloads a valid PNG of exactly that size
    image = httpx.get(job["url"], timeout=10, trust_env=False)
    assert image.status_code == 200
    assert image.headers["Content-Type"] == "image/png"
    info = image_info(image.content)
    assert info is not None
    assert (info.format, info.width, info.height) == ("png", 512, 512)
    assert decode_png(image.content).height == 512
    # and the balance dropped by exactly the price of that size and quality
    assert balance(http, tenant.member_key) == before - MEDIUM_PRICE
    assert Decimal(str(job["credits_charged"])) == MEDIUM_PRICE


def test_a_batch_shows_its_progress_while_it_runs_and_completes(http: httpx.Client, tenant: Tenant) -> None:
    # Given a batch of six images, each taking the mock provider 0.6 s
    items = [
        {
            "model": "mock/image",
            "size": "256x256",
            "prompt": f"Tile {n} {uuid.uuid4()}",
            "metadata": {"mock": {"delay_ms": 600}},
        }
        for n in range(6)
    ]
    accepted = http.post("/v1/images/batch", json={"items": items}, headers=bearer(tenant.owner_key))
    assert accepted.status_code == 202, accepted.text
    batch = accepted.json()
    assert batch["progress"]["total"] == 6
    # When it is polled until done
    seen: list[dict[str, Any]] = []
    done = wait_for(
        http,
        f"/v1/images/batches/{batch['id']}",
        tenant.owner_key,
        lambda b: b["progress"]["done"] == 6,
        seen,
    )
    # Then progress was visible on the way (jobs running, or some done and some not)
    assert any(s["progress"]["processing"] or 0 < s["progress"]["done"] < 6 for s in seen), [
        s["progress"] for s in seen
    ]
    dones = [s["progress"]["done"] for s in seen]
    assert dones == sorted(dones)
    # and it completed: every image downloads, six images charged
    assert (done["status"], done["progress"]["completed"]) == ("completed", 6)
    for job in done["jobs"]:
        assert image_info(httpx.get(job["url"], timeout=10, trust_env=False).content) is not None
    assert balance(http, tenant.owner_key) == 10 - 6 * SMALL_PRICE


def test_a_batch_the_org_cannot_afford_is_refused_whole(
    http: httpx.Client, runtime: LocalRuntime, make_tenant: Any
) -> None:
    poor: Tenant = make_tenant(f"Poor {uuid.uuid4().hex[:6]}")
    http.post(
        f"/v1/orgs/{poor.org_id}/credits/grants",
        json={"amount": "0.5", "kind": "grant"},
        headers=bearer(runtime.admin_key),
    )
    items = [{"model": "mock/image", "size": "256x256", "prompt": f"Pricey {n}"} for n in range(4)]  # 0.52
    refused = http.post("/v1/images/batch", json={"items": items}, headers=bearer(poor.owner_key))
    assert refused.status_code == 402, refused.text
    assert refused.json()["code"] == "insufficient_credits"
    held = http.get("/v1/credits/balance", headers=bearer(poor.owner_key)).json()["held"]
    assert held == 0


def test_a_job_whose_provider_always_fails_ends_failed_and_in_the_dlq(
    http: httpx.Client, runtime: LocalRuntime, tenant: Tenant
) -> None:
    # Given a job whose provider answers HTTP 500 every time (the runtime retries failed
    # messages after 1 s here instead of the queue's visibility timeout)
    submitted = http.post(
        "/v1/images",
        json={
            "model": "mock/image",
            "size": "256x256",
            "prompt": "Doomed",
            "metadata": {"mock": {"fail": "error"}},
        },
        headers=bearer(tenant.owner_key),
    )
    job_id = submitted.json()["id"]
    # When the worker has had it the queue's five receives
    job = wait_for(http, f"/v1/images/{job_id}", tenant.owner_key, lambda j: j["status"] == "failed")
    # Then it is failed after five attempts, nothing charged, and its message reaches the DLQ
    assert job["attempts"] == 5
    assert job["error"]["code"] == "provider_error"
    assert balance(http, tenant.owner_key) == 10
    sqs = runtime.aws("sqs")
    dlq = next(url for url in sqs.list_queues()["QueueUrls"] if url.endswith("imagejobsdlq"))
    deadline = time.monotonic() + WAIT_SECONDS
    bodies: list[str] = []
    while time.monotonic() < deadline and not any(job_id in body for body in bodies):
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        bodies += [m["Body"] for m in messages]
    assert any(json.loads(body)["job_id"] == job_id for body in bodies)


def test_the_openai_sdk_generates_images_inline(
    runtime: LocalRuntime, tenant: Tenant, http: httpx.Client
) -> None:
    client = OpenAI(base_url=f"{runtime.base_url}/v1", api_key=tenant.owner_key, max_retries=0, timeout=30)
    prompt = f"SDK lighthouse {uuid.uuid4()}"
    as_url = client.images.generate(model="mock/image", prompt=prompt, size="256x256", response_format="url")
    data = httpx.get(str(as_url.data[0].url), timeout=10, trust_env=False).content
    assert image_info(data) is not None
    as_b64 = client.images.generate(
        model="mock/image", prompt=prompt, size="256x256", response_format="b64_json"
    )
    assert base64.b64decode(str(as_b64.data[0].b64_json)) == data  # the same asset, reused
    assert balance(http, tenant.owner_key) == 10 - SMALL_PRICE


def test_the_batch_command_downloads_every_image_and_exits_0(
    runtime: LocalRuntime, tenant: Tenant, tmp_path: Path
) -> None:
    # Given a JSONL file and a CSV file of prompts
    run = uuid.uuid4().hex[:8]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text(
        "\n".join(
            [
                json.dumps({"prompt": f"A fox {run}", "name": "fox"}),
                json.dumps({"prompt": f"A whale {run}", "size": "512x512"}),
                json.dumps({"prompt": f"A meadow {run}", "name": "meadow"}),
            ]
        )
        + "\n"
    )
    csv_file = tmp_path / "prompts.csv"
    csv_file.write_text(f"prompt,name,size\nA river {run},river,256x256\nA hill {run},hill,512x512\n")
    env = {
        **os.environ,
        "PYTHONPATH": PYTHONPATH,
        "TOLLGATE_BASE_URL": runtime.base_url,
        "TOLLGATE_API_KEY": tenant.member_key,
    }
    for path, out, expected in (
        (jsonl, tmp_path / "out-jsonl", {"fox.png": 256, "0002.png": 512, "meadow.png": 256}),
        (csv_file, tmp_path / "out-csv", {"river.png": 256, "hill.png": 512}),
    ):
        # When the batch command runs on it
        finished = subprocess.run(
            [
                sys.executable,
                "-m",
                "tollgate_local.cli",
                "images",
                "batch",
                str(path),
                "--out",
                str(out),
                "--model",
                "mock/image",
                "--size",
                "256x256",
                "--poll",
                "0.2",
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # Then it exits 0 having shown its progress, and every image is in the folder
        assert finished.returncode == 0, finished.stderr
        assert "done" in finished.stderr
        assert "[" in finished.stderr
        files = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
        assert files == sorted(expected)
        for name, side in expected.items():
            info = image_info((out / name).read_bytes())
            assert info is not None
            assert (info.width, info.height) == (side, side)
        manifest = json.loads((out / "manifest.json").read_text())
        assert [entry["status"] for entry in manifest] == ["completed"] * len(expected)
