"""How a provider call fails, in terms the gateway answers with (S11).

Every failure of a provider is a ``ProviderError`` (``502 provider_error``) or, on a timeout, a
``ProviderTimeout`` (``504``). The subclasses here add what the fallback chain and the request
record need: which provider, the provider's own status and error type, and whether trying
again (or trying the next model) may succeed.
"""

from __future__ import annotations

from tollgate.errors import InvalidRequest, ProviderError, ProviderTimeout

# Upstream statuses that say nothing about the request itself: our key or our model name is
# wrong (an operator's problem). Another provider of a fallback chain may well answer.
_CONFIGURATION_STATUSES = frozenset({401, 403, 404})
_MAX_MESSAGE_CHARS = 500


def retryable_status(status: int) -> bool:
    """429 and every 5xx (including Anthropic's 529 "overloaded") are worth another try."""
    return status == 429 or status >= 500


class UpstreamError(ProviderError):
    """A provider answered with an error, could not be reached, or answered nonsense."""

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        upstream_status: int | None = None,
        upstream_code: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.provider = provider
        self.upstream_status = upstream_status
        self.upstream_code = upstream_code
        self.retryable = retryable
        extra: dict[str, object] = {"provider": provider}
        if upstream_status is not None:
            extra["provider_status"] = upstream_status
        if upstream_code:
            extra["provider_code"] = upstream_code
        super().__init__(detail[:_MAX_MESSAGE_CHARS], extra=extra)

    @property
    def fallback_ok(self) -> bool:
        """Whether the next model of a fallback chain should be tried: transient failures, and
        failures of the gateway's own configuration (key refused, model unknown upstream)."""
        return self.retryable or self.upstream_status in _CONFIGURATION_STATUSES


class UpstreamTimeout(UpstreamError, ProviderTimeout):
    """The provider did not answer in time (``504``). Always worth the next model."""

    def __init__(self, detail: str, *, provider: str) -> None:
        super().__init__(detail, provider=provider, upstream_code="timeout", retryable=True)


class ProviderNotConfigured(UpstreamError):
    """The provider has no key (or base URL) here. Skipped by fallback chains; answered
    ``503`` when nothing else can serve the request."""

    status = 503
    code = "provider_not_configured"
    title = "The AI provider is not configured"

    def __init__(self, provider: str, detail: str | None = None) -> None:
        super().__init__(
            detail or f"provider {provider!r} is not configured on this gateway",
            provider=provider,
            upstream_code="not_configured",
            retryable=True,
        )


class UnsupportedOperation(InvalidRequest):
    """The model's provider does not offer this kind of call (e.g. chat on ``stability``)."""


def upstream_error(provider: str, status: int, message: str, code: str | None = None) -> UpstreamError:
    """The error for an HTTP error answer of ``provider``. The provider's own message is kept,
    except on 401, where it may describe the gateway's credentials."""
    if status == 401:
        detail = f"{provider} refused the gateway's credentials (HTTP {status})"
    else:
        detail = (
            f"{provider} returned HTTP {status}: {message}"
            if message
            else f"{provider} returned HTTP {status}"
        )
    return UpstreamError(
        detail,
        provider=provider,
        upstream_status=status,
        upstream_code=code,
        retryable=retryable_status(status),
    )
