"""Domain exceptions, each mapped to one HTTP status and one stable problem ``code``.

Handlers never choose a status code: they raise one of these and the shared resolver turns it
into an RFC 9457 problem response (``tollgate.api.problems``). The mapping lives on the class,
so there is no ``isinstance`` chain anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from msgspec import Struct


class FieldError(Struct, frozen=True):
    """One invalid field of a request: where it is, and what is wrong with it."""

    field: str
    message: str
    kind: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "type": self.kind}


class TollgateError(Exception):
    """Base of every error a client may see. Subclasses set status, code and title."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_request"
    title: ClassVar[str] = "Invalid request"

    def __init__(
        self,
        detail: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})


class InvalidRequest(TollgateError):
    status = 400
    code = "invalid_request"
    title = "Invalid request"


class ValidationFailed(TollgateError):
    """The request is well-formed JSON but some fields are missing, unknown or ill-typed."""

    status = 422
    code = "invalid_request"
    title = "Request validation failed"

    def __init__(self, errors: Sequence[FieldError], detail: str | None = None) -> None:
        self.errors = list(errors)
        fields = ", ".join(sorted({e.field for e in self.errors}))
        super().__init__(
            detail or f"Invalid fields: {fields}",
            extra={"errors": [e.as_dict() for e in self.errors]},
        )


class Unauthorized(TollgateError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(TollgateError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(TollgateError):
    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(TollgateError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class Conflict(TollgateError):
    status = 409
    code = "conflict"
    title = "Conflict"


class IdempotencyConflict(TollgateError):
    """The Idempotency-Key was already used with a different request."""

    status = 409
    code = "idempotency_conflict"
    title = "Idempotency key reused with a different request"


class IdempotencyInProgress(TollgateError):
    """A request with the same Idempotency-Key is still being processed."""

    status = 409
    code = "idempotency_in_progress"
    title = "A request with this idempotency key is in progress"


class PayloadTooLarge(TollgateError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class UnsupportedMediaType(TollgateError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class InsufficientCredits(TollgateError):
    status = 402
    code = "insufficient_credits"
    title = "Insufficient credits"


class RateLimited(TollgateError):
    status = 429
    code = "rate_limited"
    title = "Rate limit exceeded"


class QuotaExceeded(TollgateError):
    status = 429
    code = "quota_exceeded"
    title = "Quota exceeded"


class ContentBlocked(TollgateError):
    status = 422
    code = "content_blocked"
    title = "Content blocked by policy"


class ProviderError(TollgateError):
    status = 502
    code = "provider_error"
    title = "The AI provider failed"


class ProviderTimeout(ProviderError):
    status = 504
    title = "The AI provider timed out"


class ServiceUnavailable(TollgateError):
    """A dependency of Tollgate itself (AWS) failed; the request may be retried."""

    status = 503
    code = "service_unavailable"
    title = "Service temporarily unavailable"
