"""The retrying sender shared by every adapter: backoff, Retry-After, budget, timeouts."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.unit.test_providers_fakes import NOW, ScriptedTransport, json_response, make_http, timeout_step
from tollgate.errors import ProviderError, ProviderTimeout
from tollgate.providers.errors import UpstreamError, UpstreamTimeout
from tollgate.providers.http import RetryPolicy, parse_retry_after


def _parser(response: httpx.Response) -> tuple[str, str | None]:
    return response.json().get("message", ""), response.json().get("code")


def _post(http_sleeps: list[float], transport: ScriptedTransport, **kwargs: object) -> httpx.Response:
    http = make_http(transport, http_sleeps, **kwargs)  # type: ignore[arg-type]
    return http.post(
        "acme",
        "https://acme.test/v1/x",
        headers={},
        json_body={"q": 1},
        read_timeout=5.0,
        error_parser=_parser,
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": format_datetime(NOW + timedelta(seconds=7), usegmt=True)}, 7.0),
        ({"retry-after": format_datetime(NOW - timedelta(seconds=7), usegmt=True)}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers), NOW) == expected


def test_backoff_doubles_with_equal_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    assert [policy.backoff(n, 0.0) for n in (1, 2, 3, 4, 5)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert [policy.backoff(n, 1.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


def test_5xx_is_retried_with_backoff_then_succeeds() -> None:
    # Given two 503s, then a success
    sleeps: list[float] = []
    transport = ScriptedTransport(
        json_response(503, {"message": "busy"}),
        json_response(502, {"message": "bad gw"}),
        json_response(200, {}),
    )
    # When
    response = _post(sleeps, transport)
    # Then: three attempts, jittered exponential sleeps (0.5 * 2^(n-1), jitter 0.5 -> 3/4 of it)
    assert response.status_code == 200
    assert transport.calls == 3
    assert sleeps == [0.375, 0.75]
    assert transport.requests[0].content == transport.requests[2].content


def test_retry_after_is_capped() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(json_response(429, {}, {"retry-after": "120"}), json_response(200, {}))
    _post(sleeps, transport)
    assert sleeps == [10.0]


def test_exhausted_retries_raise_the_last_error_as_retryable() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(*[json_response(429, {"message": "slow down", "code": "rate"})] * 3)
    with pytest.raises(UpstreamError) as caught:
        _post(sleeps, transport)
    assert transport.calls == 3
    assert len(sleeps) == 2
    error = caught.value
    assert isinstance(error, ProviderError)
    assert (error.status, error.code) == (502, "provider_error")
    assert (error.upstream_status, error.upstream_code, error.retryable) == (429, "rate", True)
    assert "slow down" in error.detail


def test_the_budget_stops_retries_that_would_overrun_it() -> None:
    # Given a Retry-After of 5 s and a budget of 3 s for the whole call
    sleeps: list[float] = []
    transport = ScriptedTransport(json_response(503, {}, {"retry-after": "5"}), json_response(200, {}))
    # Then the 503 is final: no sleep, one call
    with pytest.raises(UpstreamError):
        _post(sleeps, transport, budget_seconds=3.0)
    assert (transport.calls, sleeps) == (1, [])


def test_transport_errors_are_retried_then_reported_as_502() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(UpstreamError) as caught:
        _post(sleeps, transport)
    assert transport.calls == 3
    assert caught.value.status == 502
    assert caught.value.upstream_code == "transport_error"
    assert not isinstance(caught.value, ProviderTimeout)


def test_a_timeout_then_success_is_a_success() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(timeout_step, json_response(200, {}))
    assert _post(sleeps, transport).status_code == 200
    assert sleeps == [0.375]


def test_repeated_timeouts_are_a_504() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport(timeout_step, timeout_step)
    with pytest.raises(UpstreamTimeout) as caught:
        _post(sleeps, transport, max_attempts=2)
    assert caught.value.status == 504
    assert caught.value.code == "provider_error"
    assert caught.value.retryable


def test_a_401_hides_the_providers_message() -> None:
    transport = ScriptedTransport(json_response(401, {"message": "Incorrect API key provided: sk-abc***xyz"}))
    with pytest.raises(UpstreamError) as caught:
        _post([], transport)
    assert "sk-abc" not in caught.value.detail
    assert caught.value.fallback_ok
    assert not caught.value.retryable
