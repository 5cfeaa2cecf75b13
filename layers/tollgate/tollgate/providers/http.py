"""HTTP for provider adapters: one shared ``httpx.Client`` per process, timeouts, and retries.

Retries (S6): a 429, any 5xx, a timeout or a transport error is tried again, up to
``max_attempts`` in all, after a jittered exponential backoff, or after the provider's
``Retry-After`` (seconds or an HTTP date; ``retry-after-ms`` too) when it sends one, capped.
Any other 4xx is final at once. Retries also stop when the next sleep would overrun the
``budget_seconds`` of the whole call, so a provider cannot hold a Lambda past its timeout.

``sleep``, ``jitter`` and ``monotonic`` are injected: tests neither sleep nor guess.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any, TypeVar

import httpx
from msgspec import Struct, field
from pydantic import BaseModel, ConfigDict, ValidationError

from tollgate.providers.errors import UpstreamError, UpstreamTimeout, retryable_status, upstream_error

ErrorParser = Callable[[httpx.Response], tuple[str, str | None]]
"""Reads a provider's error body: (message, provider error code or type)."""
RetryHint = Callable[[httpx.Response], float | None]
"""A provider-specific retry delay in seconds, read from the body (Gemini's RetryInfo)."""

USER_AGENT = "tollgate-gateway/0.1"
_Shape = TypeVar("_Shape", bound="WireModel")


class RetryPolicy(Struct, frozen=True):
    max_attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 4.0
    retry_after_cap: float = 10.0
    budget_seconds: float = 20.0

    def backoff(self, attempt: int, jitter: float) -> float:
        """The delay after failed attempt number ``attempt`` (1-based) with no hint from the
        provider: exponential, capped, and "equal jitter" (half fixed, half random)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling / 2 + ceiling / 2 * jitter


class Timeouts(Struct, frozen=True):
    """Seconds for one attempt: reading an answer (per operation) and connecting."""

    chat: float = 20.0
    image: float = 60.0
    connect: float = 3.0

    def for_read(self, read: float) -> httpx.Timeout:
        return httpx.Timeout(read, connect=min(self.connect, read))


def parse_retry_after(headers: httpx.Headers, now: datetime) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (delta-seconds or an HTTP
    date), or ``None`` when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@cache
def trace_http_calls() -> None:
    """X-Ray subsegments for provider calls, installed with the first client (functions create
    their ``Tracer(auto_patch=False)``; a no-op when tracing is disabled)."""
    from aws_lambda_powertools import Tracer

    Tracer().patch(["httpx"])


@cache
def shared_client() -> httpx.Client:
    """The process's client: pooled connections survive warm invocations. Timeouts are given
    per request; this default only guards a call that forgets one. X-Ray traces its calls."""
    trace_http_calls()
    return httpx.Client(
        timeout=httpx.Timeout(30.0, connect=3.0),
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ProviderHttp(Struct):
    """Sends one logical provider call, retrying as the module says."""

    client: httpx.Client = field(default_factory=shared_client)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = _utcnow

    def post(
        self,
        provider: str,
        url: str,
        *,
        headers: Mapping[str, str],
        read_timeout: float,
        error_parser: ErrorParser,
        json_body: Any = None,
        files: Mapping[str, tuple[str | None, str | bytes]] | None = None,
        retry_hint: RetryHint | None = None,
    ) -> httpx.Response:
        """POST until a 2xx answer, which is returned; raise ``UpstreamError`` for an error
        answer (with the provider's message) and ``UpstreamTimeout`` for a timeout."""
        started = self.monotonic()
        timeout = self.timeouts.for_read(read_timeout)
        content = None
        send_headers = dict(headers)
        if json_body is not None:
            # Serialised once: every attempt sends the same bytes.
            content = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            send_headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            failure: UpstreamError
            hint: float | None = None
            try:
                response = self.client.post(
                    url,
                    headers=send_headers,
                    content=content,
                    files=files,
                    timeout=timeout,
                )
            except httpx.TimeoutException:
                failure = UpstreamTimeout(
                    f"{provider} did not answer within {read_timeout:g}s", provider=provider
                )
            except httpx.TransportError as exc:
                failure = UpstreamError(
                    f"{provider} could not be reached ({type(exc).__name__})",
                    provider=provider,
                    upstream_code="transport_error",
                    retryable=True,
                )
            else:
                if response.is_success:
                    return response
                message, code = error_parser(response)
                failure = upstream_error(provider, response.status_code, message, code)
                if not retryable_status(response.status_code):
                    raise failure
                hint = parse_retry_after(response.headers, self.now())
                if hint is None and retry_hint is not None:
                    hint = retry_hint(response)
            if attempt >= self.policy.max_attempts:
                raise failure
            delay = (
                min(hint, self.policy.retry_after_cap)
                if hint is not None
                else self.policy.backoff(attempt, self.jitter())
            )
            if self.monotonic() - started + delay > self.policy.budget_seconds:
                raise failure
            self.sleep(delay)


def json_error_message(response: httpx.Response) -> Any:
    """The body of an error answer as JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def text_snippet(response: httpx.Response, limit: int = 200) -> str:
    """The start of a non-JSON error body, on one line."""
    return " ".join(response.text[:limit].split())


def parse_body(provider: str, response: httpx.Response, shape: type[_Shape]) -> _Shape:
    """A successful answer's JSON, validated against the provider's documented ``shape``; an
    answer that does not fit is the provider's fault (``502``), worth the next model."""
    try:
        return shape.model_validate_json(response.content)
    except ValidationError as exc:
        raise UpstreamError(
            f"{provider} sent an answer Tollgate cannot read ({exc.error_count()} problems)",
            provider=provider,
            upstream_status=response.status_code,
            upstream_code="malformed_response",
            retryable=True,
        ) from exc


class WireModel(BaseModel):
    """A provider's JSON shape: fields Tollgate does not use are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
