"""The local runtime as a developer meets it: started by one command, with the demo org and
keys of ``local.json`` working, and its local-only routes."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import LocalRuntime, assert_problem, bearer

pytestmark = pytest.mark.e2e


def test_local_json_names_the_base_url_and_keys(runtime: LocalRuntime) -> None:
    state = json.loads((runtime.state_dir / "local.json").read_text())
    assert set(state) == {"base_url", "admin_key", "demo_org_id", "demo_key"}
    assert state["base_url"].startswith("http://127.0.0.1:")
    assert state["admin_key"].startswith("tg_")
    assert state["demo_key"].startswith("tg_")
    assert state["demo_org_id"].startswith("org_")


def test_the_start_prints_a_ready_curl_and_a_ready_line(runtime: LocalRuntime) -> None:
    output = (runtime.state_dir / "runtime.log").read_text()
    assert f'curl -H "Authorization: Bearer {runtime.demo_key}" {runtime.base_url}/v1/me' in output
    assert f"ready on {runtime.base_url}" in output


def test_health_answers_without_a_key(http: httpx.Client) -> None:
    response = http.get("/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["X-Request-Id"]


@pytest.mark.parametrize("method", ["TRACE", "QUERY"])
def test_a_method_no_route_has_is_the_gateways_not_found_problem(http: httpx.Client, method: str) -> None:
    # When: http.server alone would answer 501 with an HTML page
    response = http.request(method, "/v1/health")
    # Then
    assert_problem(response, 404, "not_found")


def test_the_openapi_document_is_served_without_a_key(http: httpx.Client) -> None:
    response = http.get("/v1/openapi.json")
    assert response.status_code == 200, response.text
    assert response.json()["paths"]["/v1/openapi.json"]["get"]["security"] == []


def test_me_with_the_demo_key_is_the_demo_orgs_owner(http: httpx.Client, runtime: LocalRuntime) -> None:
    response = http.get("/v1/me", headers=bearer(runtime.demo_key))
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["org_id"] == runtime.demo_org_id
    assert me["role"] == "owner"
    assert me["plan"] == "starter"
    assert me["org"]["name"] == "Demo"


def test_me_with_the_admin_key(http: httpx.Client, runtime: LocalRuntime) -> None:
    response = http.get("/v1/me", headers=bearer(runtime.admin_key))
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "admin"


def test_the_status_route_lists_what_the_template_declares(http: httpx.Client, runtime: LocalRuntime) -> None:
    status = http.get("/_local/status").json()
    assert status["moto"] == runtime.moto_endpoint
    assert {"AccountsFunction", "AuthorizerFunction"} <= set(status["functions"])
    assert "GET /v1/me -> AccountsFunction" in status["routes"]


def test_a_function_without_schedules_cannot_be_fired(http: httpx.Client) -> None:
    response = http.post("/_local/schedules/AccountsFunction")
    assert response.status_code == 404


def test_the_demo_org_starts_with_100_promo_credits(http: httpx.Client, runtime: LocalRuntime) -> None:
    # When the demo owner asks for its balance
    response = http.get("/v1/credits/balance", headers=bearer(runtime.demo_key))
    # Then its credits include the one promo lot of 100 credits granted at start (S10)
    assert response.status_code == 200, response.text
    promo = [lot for lot in response.json()["lots"] if lot["kind"] == "promo"]
    assert [lot["original"] for lot in promo] == [100]
