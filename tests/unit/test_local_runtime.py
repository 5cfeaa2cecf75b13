"""The local runtime's HTTP server, settings and bootstrap pieces.

The server is served on a free port on 127.0.0.1 with a gateway built from a small template
dict and a fake invoker (a Python callable), so no worker process and no moto is involved
except where the admin key bootstrap needs the template's secret and parameter."""

from __future__ import annotations

import json
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tollgate.aws.identity_store import admin_key_from_json
from tollgate.identity.keys import parse_key
from tollgate_local.bootstrap import LocalState, describe, ensure_admin_key, read_state, write_state
from tollgate_local.gateway import MAX_PAYLOAD_BYTES, ApiDefinition, Gateway
from tollgate_local.resources import REGION, CreatedStack
from tollgate_local.runtime import ApiServer, RuntimeConfig
from tollgate_local.schedules import Scheduler, schedule_sources
from tollgate_local.template import REPO_ROOT, Resolver

TOO_LARGE = '{"code":"payload_too_large","request_id":"$context.requestId"}'
NOT_FOUND = '{"code":"not_found"}'
TEMPLATE: dict[str, Any] = {
    "Resources": {
        "Api": {
            "Type": "AWS::Serverless::Api",
            "Properties": {
                "StageName": "dev",
                "GatewayResponses": {
                    "REQUEST_TOO_LARGE": {
                        "StatusCode": 413,
                        "ResponseParameters": {"Headers": {"Content-Type": "'application/problem+json'"}},
                        "ResponseTemplates": {"application/json": TOO_LARGE},
                    },
                    "MISSING_AUTHENTICATION_TOKEN": {
                        "StatusCode": 404,
                        "ResponseParameters": {"Headers": {"Content-Type": "'application/problem+json'"}},
                        "ResponseTemplates": {"application/json": NOT_FOUND},
                    },
                },
            },
        },
        "EchoFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "CodeUri": "functions/echo/",
                "Handler": "app.lambda_handler",
                "Events": {
                    "Echo": {
                        "Type": "Api",
                        "Properties": {
                            "RestApiId": {"Ref": "Api"},
                            "Path": "/v1/echo/{thing}",
                            "Method": "ANY",
                        },
                    },
                    "Tick": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)"}},
                },
            },
        },
    }
}


class EchoFunction:
    """A fake invoker: answers what API Gateway sent it, as a proxy response."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, function_id: str, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        if "source" in event:  # a scheduled event
            return {"ticked": True}
        return {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json", "X-Echo": "yes"},
            "body": json.dumps({"length": len(event.get("body") or "")}),
        }


@pytest.fixture
def echo() -> EchoFunction:
    return EchoFunction()


@pytest.fixture
def server(echo: EchoFunction) -> Iterator[ApiServer]:
    gateway = Gateway(ApiDefinition.from_template(TEMPLATE, Resolver()), echo)
    scheduler = Scheduler(schedule_sources(TEMPLATE, Resolver()), echo)
    api = ApiServer(0, gateway, scheduler, {"functions": ["EchoFunction"]}, access_log=False)
    thread = threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield api
    api.shutdown()
    api.server_close()


def test_a_request_reaches_the_function_as_api_gateway_sends_it(
    server: ApiServer, echo: EchoFunction
) -> None:
    # When
    response = httpx.post(
        f"{server.base_url}/v1/echo/abc?x=1&x=2&empty=",
        content=b'{"a": 1}',
        headers={"X-Custom": "v", "Content-Type": "application/json"},
    )
    # Then the function's answer comes back as HTTP
    assert response.status_code == 201
    assert response.headers["X-Echo"] == "yes"
    assert response.json() == {"length": 8}
    # and the function got the proxy event of the route
    event = echo.events[0]
    assert event["httpMethod"] == "POST"
    assert event["resource"] == "/v1/echo/{thing}"
    assert event["path"] == "/v1/echo/abc"
    assert event["pathParameters"] == {"thing": "abc"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "empty": [""]}
    assert event["queryStringParameters"]["x"] == "2"
    assert event["headers"]["X-Custom"] == "v"
    assert event["body"] == '{"a": 1}'


def test_a_chunked_body_is_read_whole(server: ApiServer, echo: EchoFunction) -> None:
    response = httpx.put(f"{server.base_url}/v1/echo/abc", content=iter([b"12345", b"678"]))
    assert response.status_code == 201
    assert echo.events[0]["body"] == "12345678"


def test_a_body_over_api_gateways_limit_is_refused_without_reaching_the_function(
    server: ApiServer, echo: EchoFunction
) -> None:
    response = httpx.post(f"{server.base_url}/v1/echo/abc", content=b"x" * (MAX_PAYLOAD_BYTES + 10))
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "payload_too_large"
    assert response.headers["Connection"] == "close"
    assert echo.events == []


def test_an_unknown_route_is_the_templates_gateway_response(server: ApiServer) -> None:
    response = httpx.get(f"{server.base_url}/v1/nothing")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found"}


def test_schedules_fire_on_demand_through_the_local_route(server: ApiServer, echo: EchoFunction) -> None:
    response = httpx.post(f"{server.base_url}/_local/schedules/EchoFunction")
    assert response.status_code == 200
    assert response.json()["fired"] == [
        {"function": "EchoFunction", "event": "Tick", "ok": True, "result": {"ticked": True}, "error": None}
    ]
    assert echo.events[0]["detail-type"] == "Scheduled Event"
    assert httpx.post(f"{server.base_url}/_local/schedules/NoFunction").status_code == 404
    assert httpx.get(f"{server.base_url}/_local/status").json() == {"functions": ["EchoFunction"]}


def test_the_server_listens_on_loopback_only(server: ApiServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    assert server.base_url.startswith("http://127.0.0.1:")
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=2):
        pass


def test_a_client_that_hangs_up_leaves_no_traceback_but_other_errors_do(
    server: ApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for error in (ConnectionResetError(104, "Connection reset by peer"), ValueError("a real bug")):
        try:
            raise error
        except Exception:
            server.handle_error(None, ("127.0.0.1", 1))
    printed = capsys.readouterr().err
    assert "ConnectionResetError" not in printed
    assert "ValueError: a real bug" in printed


def test_config_from_the_environment() -> None:
    default = RuntimeConfig.from_env({})
    assert default.port == 3000
    assert default.moto_port is None
    assert default.state_dir == REPO_ROOT / ".tollgate"
    assert default.template_path == REPO_ROOT / "template.yaml"
    config = RuntimeConfig.from_env(
        {
            "TOLLGATE_PORT": "4000",
            "TOLLGATE_MOTO_PORT": "5001",
            "TOLLGATE_STATE_DIR": "/tmp/x",
            "TOLLGATE_SQS_RETRY_SECONDS": "0",
            "TOLLGATE_ACCESS_LOG": "0",
        }
    )
    assert (config.port, config.moto_port, config.state_dir) == (4000, 5001, Path("/tmp/x"))
    assert config.sqs_retry_seconds == 0
    assert config.access_log is False
    with pytest.raises(SystemExit, match="TOLLGATE_PORT"):
        RuntimeConfig.from_env({"TOLLGATE_PORT": "lots"})


def test_state_file_round_trip_is_private(tmp_path: Path) -> None:
    state = LocalState("http://127.0.0.1:3000", "tg_admin", "org_1", "tg_demo")
    path = write_state(tmp_path / "state", state)
    assert json.loads(path.read_text()) == {
        "base_url": "http://127.0.0.1:3000",
        "admin_key": "tg_admin",
        "demo_org_id": "org_1",
        "demo_key": "tg_demo",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_state(tmp_path / "state") == state
    assert read_state(tmp_path / "nowhere") is None
    (tmp_path / "state" / "local.json").write_text("{not json")
    assert read_state(tmp_path / "state") is None
    text = describe(state, path)
    assert 'curl -H "Authorization: Bearer tg_demo" http://127.0.0.1:3000/v1/me' in text
    assert "http://127.0.0.1:3000/dashboard" in text


def test_the_admin_key_is_stored_as_its_hmac_and_kept_across_bootstraps(stack: CreatedStack) -> None:
    # Given the template's stack in moto
    session = boto3.session.Session(region_name=REGION)
    ssm = boto3.client("ssm", region_name=REGION)
    # When
    first = ensure_admin_key(session, stack)
    # Then the parameter holds the key's id and HMAC, never the key
    stored_text = ssm.get_parameter(Name=stack.names["AdminKeyParameter"])["Parameter"]["Value"]
    stored = admin_key_from_json(stored_text)
    assert stored is not None
    assert stored.key_id == parse_key(first).key_id
    assert first not in stored_text
    # When bootstrapping again with that key: kept; with another: replaced
    assert ensure_admin_key(session, stack, first) == first
    other = ensure_admin_key(session, stack, "tg_not_a_key")
    assert other != first
    assert ensure_admin_key(session, stack, other) == other
