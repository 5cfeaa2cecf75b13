"""A scripted ``httpx`` transport for the provider adapters' tests (no network, ever), and
tests of the fake itself. The other ``test_providers_*`` modules import from here."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tollgate.providers.http import ProviderHttp, RetryPolicy, Timeouts
from tollgate.providers.keys import StaticProviderKeys

NOW = datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC)
KEYS = StaticProviderKeys(
    {
        "openai": "sk-test-openai",
        "anthropic": "sk-ant-test",
        "gemini": "AIza-test-gemini",
        "stability": "sk-test-stability",
        "ollama_base_url": "http://ollama.local:11434",
    }
)

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


class ScriptedTransport:
    """Answers each request with the next step of its script and records the request."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if not self.steps:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(request)
        return step

    @property
    def calls(self) -> int:
        return len(self.requests)

    def body(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def make_http(
    transport: ScriptedTransport,
    sleeps: list[float],
    *,
    max_attempts: int = 3,
    budget_seconds: float = 60.0,
) -> ProviderHttp:
    """A sender whose sleeps are recorded, not slept, with a fixed jitter of 0.5."""
    return ProviderHttp(
        client=transport.client(),
        policy=RetryPolicy(
            max_attempts=max_attempts,
            base_delay=0.5,
            max_delay=8.0,
            retry_after_cap=10.0,
            budget_seconds=budget_seconds,
        ),
        timeouts=Timeouts(chat=5.0, image=30.0, connect=1.0),
        sleep=sleeps.append,
        jitter=lambda: 0.5,
        now=lambda: NOW,
    )


def timeout_step(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def test_the_transport_answers_in_order_and_records() -> None:
    # Given
    transport = ScriptedTransport(json_response(200, {"a": 1}), json_response(201, {"b": 2}))
    client = transport.client()
    # When
    first = client.post("http://x.test/one", json={"q": 1})
    second = client.post("http://x.test/two")
    # Then
    assert (first.status_code, second.status_code) == (200, 201)
    assert transport.calls == 2
    assert transport.body(0) == {"q": 1}


def test_the_transport_refuses_an_unscripted_request() -> None:
    transport = ScriptedTransport()
    with pytest.raises(AssertionError, match="unexpected request"):
        transport.client().get("http://x.test/")
