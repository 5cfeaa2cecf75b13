"""The dashboard page in a real browser (S9): headless Chromium (Debian's ``chromium``,
installed by ``make chromium``; no browser is ever downloaded) opens ``/dashboard`` on the
local runtime, a person's key is typed into the page, and the charts must show the numbers
the log and the ledger hold. A screenshot is kept in ``test-artifacts/dashboard.png``.

Everything the page loads is checked to come from the runtime's own origin.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import LocalRuntime, bearer
from tollgate_local.template import REPO_ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def grouped(value: Decimal | int) -> str:
    """The page's number format: thousands separated, the API's digits kept."""
    text = format(Decimal(value).normalize(), "f") if isinstance(value, Decimal) else str(value)
    whole, _, fraction = text.partition(".")
    return f"{int(whole):,}" + (f".{fraction}" if fraction else "")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # The browser comes from the project's setup (make test runs make chromium first).
    missing = "Debian's chromium is missing: run `make chromium` (apt-get install chromium, as root)"
    assert CHROMIUM.exists(), missing
    assert shutil.which(str(CHROMIUM)), missing
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def demo_traffic(http: httpx.Client, runtime: LocalRuntime) -> None:
    """The demo key's requests: answered, answered again from the cache, an embedding, a
    provider failure."""
    key = bearer(runtime.demo_key)
    chat = {
        "model": "mock/chat",
        "messages": [{"role": "user", "content": "dashboard e2e"}],
        "temperature": 0,
    }
    statuses = [
        http.post("/v1/chat/completions", json=chat, headers=key).status_code,
        http.post("/v1/chat/completions", json=chat, headers=key).status_code,
        http.post("/v1/embeddings", json={"model": "mock/embed", "input": ["dash"]}, headers=key).status_code,
        http.post(
            "/v1/chat/completions",
            json={
                **chat,
                "messages": [{"role": "user", "content": "fail"}],
                "metadata": {"mock": {"fail": "error"}},
            },
            headers=key,
        ).status_code,
    ]
    assert statuses == [200, 200, 200, 502]


def stored_log(runtime: LocalRuntime) -> list[dict[str, Any]]:
    dynamodb = runtime.aws("dynamodb")
    table = dynamodb.list_tables()["TableNames"][0]
    day = datetime.now(UTC).date().isoformat()
    return list(
        dynamodb.query(
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"ORG#{runtime.demo_org_id}#LOG#{day}"}},
        )["Items"]
    )


def test_the_dashboard_shows_the_demo_orgs_usage(
    browser: Any, http: httpx.Client, runtime: LocalRuntime
) -> None:
    # Given the demo org's requests, as a person makes them
    demo_traffic(http, runtime)
    log = stored_log(runtime)
    credits_logged = sum(int(item["credits"]["N"]) for item in log)
    by_model: dict[str, int] = {}
    for item in log:
        by_model[item["model"]["S"]] = by_model.get(item["model"]["S"], 0) + 1
    balance = json.loads(
        http.get("/v1/credits/balance", headers=bearer(runtime.demo_key)).text, parse_float=Decimal
    )["balance"]
    # When a person opens the dashboard and types the demo key into it
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    origins: set[str] = set()
    page.on("request", lambda request: origins.add("{0.scheme}://{0.netloc}".format(urlsplit(request.url))))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{runtime.base_url}/dashboard")
    page.fill("#key", runtime.demo_key)
    page.click("#open")
    page.wait_for_selector("#board[data-state=ready]", timeout=20_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    # Then the cards show the log's figures and the ledger's balance
    assert page.inner_text("#v-requests") == grouped(len(log))
    assert page.inner_text("#v-credits") == grouped(Decimal(credits_logged).scaleb(-4))
    assert page.inner_text("#v-balance") == grouped(balance)
    hits = sum(item["cache_hit"]["BOOL"] for item in log)
    assert page.inner_text("#s-cache").startswith(f"{hits} of ")
    # And the charts are drawn with those numbers: today's bar, one row per model, the ring
    today = datetime.now(UTC).date().isoformat()
    bars = page.locator("#chart-days g.bar")
    assert bars.count() == 30
    last = page.locator(f'#chart-days g.bar[data-key="{today}"]')
    failures = sum(item["status"]["S"] == "failed" for item in log)
    assert last.get_attribute("data-successes") == str(len(log) - failures)
    assert last.get_attribute("data-failures") == str(failures)
    assert page.locator(f'#chart-days g.bar[data-key="{today}"] rect').count() == 2
    rows = page.locator("#chart-models g.row")
    assert sorted(rows.nth(i).get_attribute("data-key") for i in range(rows.count())) == sorted(by_model)
    for model, count in by_model.items():
        assert page.inner_text(f'#models-table tr[data-key="{model}"] td:nth-child(2)') == str(count)
        cost = sum(int(i["cost_micro_usd"]["N"]) for i in log if i["model"]["S"] == model)
        drawn = page.get_attribute(f'#chart-models g.row[data-key="{model}"]', "data-cost-usd")
        assert Decimal(drawn or "nan") * 1_000_000 == cost
    answered = len(log) - failures
    assert page.get_attribute("#chart-cache circle[data-rate]", "data-rate") == str(
        (Decimal(hits) / answered).quantize(Decimal("0.0001"), rounding="ROUND_FLOOR").normalize()
    )
    assert page.locator("#limits .limit").count() >= 1
    # And nothing came from anywhere but Tollgate itself, without a script error
    assert origins == {runtime.base_url}
    assert errors == []
    page.close()


def test_a_refused_key_brings_the_key_form_back(browser: Any, runtime: LocalRuntime) -> None:
    page = browser.new_page()
    page.goto(f"{runtime.base_url}/dashboard")
    page.fill("#key", "tg_AAAAAAAAAAAA_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000")
    page.click("#open")
    page.wait_for_selector("#login-error:has-text('refused')", timeout=20_000)
    assert page.is_visible("#key-form")
    assert page.evaluate("sessionStorage.length") == 0
    page.close()
