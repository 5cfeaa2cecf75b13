"""The ``Idempotency-Key`` mechanism (S11), as a route middleware backed by explicit items.

The first request with a key claims it (a conditional put); its answer is stored with the
key, and a repeat with the same body gets that answer again, status and body, without running
again. A repeat with another body is ``409 idempotency_conflict``; a repeat while the first is
still running is ``409 idempotency_in_progress`` with ``Retry-After``. Only successful answers
are kept: a refused or failed request (4xx/5xx) releases the key, so the client can correct
the request or retry it with the same key. Keys live ``IDEMPOTENCY_TTL_SECONDS`` (24 hours at
least).

For operations that move money this guards the HTTP exchange; the ledger also writes its own
operation item inside the money transaction (so even a crash between the two cannot charge
twice).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from msgspec import Struct

from tollgate.api.resolver import current_caller
from tollgate.api.rest import APIGatewayRestResolver, NextMiddleware, Response
from tollgate.clock import Clock, SystemClock
from tollgate.errors import InvalidRequest

HEADER = "Idempotency-Key"
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
IN_PROGRESS_LOCK_SECONDS = 120


class StoredResponse(Struct, frozen=True):
    status: int
    body: str
    content_type: str


class Claimed(Struct, frozen=True):
    """This request owns the key and must run; ``token`` proves it when completing."""

    token: str


class IdempotencyStore(Protocol):
    def claim(
        self, scope: str, key: str, fingerprint: str, now: int, lock_seconds: int, ttl_seconds: int
    ) -> Claimed | StoredResponse:
        """Claim the key, or return the stored answer of the same request.

        Raises ``IdempotencyConflict`` for another body, ``IdempotencyInProgress`` while locked."""
        ...

    def complete(self, scope: str, key: str, token: str, response: StoredResponse) -> None: ...

    def abandon(self, scope: str, key: str, token: str) -> None: ...


def request_fingerprint(method: str, path: str, body: str | None) -> str:
    """The same request, whatever the key order or spacing of its JSON body."""
    canonical = body or ""
    if body:
        try:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
        except ValueError:
            canonical = body
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


def idempotency_key_of(headers: Mapping[str, Any]) -> str | None:
    for name, value in headers.items():
        if name.lower() == HEADER.lower():
            text = str(value).strip()
            if not _VALID_KEY.match(text):
                raise InvalidRequest(f"{HEADER} must be 1 to 255 printable ASCII characters")
            return text
    return None


def idempotent(
    store_factory: Callable[[], IdempotencyStore],
    ttl_seconds: Callable[[], int],
    clock: Clock | None = None,
) -> Callable[[APIGatewayRestResolver, NextMiddleware], Response[Any]]:
    """A route middleware that makes the route honour ``Idempotency-Key``."""
    time_source = clock or SystemClock()

    def middleware(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
        event = app.current_event
        key = idempotency_key_of(event.headers or {})
        if key is None:
            return next_middleware(app)
        scope = current_caller(app).scope
        fingerprint = request_fingerprint(event.http_method, event.path, event.body)
        store = store_factory()
        now = int(time_source.now().timestamp())
        outcome = store.claim(scope, key, fingerprint, now, IN_PROGRESS_LOCK_SECONDS, ttl_seconds())
        if isinstance(outcome, StoredResponse):
            return Response(
                status_code=outcome.status,
                content_type=outcome.content_type,
                body=outcome.body,
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            response = next_middleware(app)
        except BaseException:
            store.abandon(scope, key, outcome.token)
            raise
        if response.status_code >= 400:
            store.abandon(scope, key, outcome.token)
            return response
        body = response.body
        text = body if isinstance(body, str) else app._serializer(body or {})  # what the client gets
        content_type = str(response.headers.get("Content-Type") or "application/json")
        store.complete(scope, key, outcome.token, StoredResponse(response.status_code, text, content_type))
        response.body = text
        return response

    middleware.honours_header = HEADER  # type: ignore[attr-defined]  # read by the OpenAPI generator
    return middleware
