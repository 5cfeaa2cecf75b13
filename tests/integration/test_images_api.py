"""The image API and its worker through the template's gateway, queue and bucket (moto, in
process): jobs reserved, queued, run from the real queue by the worker function, charged once
whatever SQS delivers twice; batches accepted or refused whole; deduplication; colour analysis."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest

from tests.conftest import Api, Tenant, load_event
from tests.integration.test_credits_api import (
    assert_ledger_matches_balance,
    assert_problem,
    balance_of,
    grant,
)
from tollgate import services
from tollgate.providers.imaging import image_info
from tollgate_local.invoke import in_process_invoker
from tollgate_local.resources import REGION, CreatedStack
from tollgate_local.sqs import QueuePoller, sqs_event_sources
from tollgate_local.template import default_template

IMAGES = "/v1/images"


@pytest.fixture
def funded(api: Api, admin_key: str, make_tenant: Any) -> Tenant:
    tenant: Tenant = make_tenant()
    assert grant(api, admin_key, tenant.org_id, 10).status == 201
    return tenant


def worker_poller(stack: CreatedStack) -> QueuePoller:
    template = default_template()
    (source,) = [
        s for s in sqs_event_sources(template, stack.resolver) if s.function_id == "ImageWorkerFunction"
    ]
    return QueuePoller(
        source,
        boto3.client("sqs", region_name=REGION),
        in_process_invoker(template),
        wait_seconds=0,
        failed_visibility_seconds=0,
    )


def run_worker(stack: CreatedStack, rounds: int = 20) -> int:
    poller = worker_poller(stack)
    handled = 0
    for _ in range(rounds):
        got = poller.poll_once()
        if not got:
            break
        handled += got
    return handled


def test_smoke(api: Api, admin_key: str, funded: Tenant, stack: CreatedStack) -> None:
    submitted = api.post(
        IMAGES,
        key=funded.member_key,
        json_body={"model": "mock/image", "prompt": "a red fox", "size": "256x256"},
    )
    assert submitted.status == 202, submitted.body
    job = submitted.json()
    print(job)
    assert run_worker(stack) == 1
    done = api.get(f"{IMAGES}/{job['id']}", key=funded.member_key)
    print(done.json())
    assert done.json()["status"] == "completed"
