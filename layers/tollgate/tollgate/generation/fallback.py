"""Walking a fallback chain: the first model that answers wins (S6, S11).

The next model is tried after a failure that another provider may not have: a transient one
(429, 5xx, timeout, unreachable), or one of the gateway's own configuration (not configured,
key refused, model unknown upstream). Any other failure (a 400 about the request, an invalid
mock knob) is the answer at once: another provider would refuse the same request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from msgspec import Struct

from tollgate.generation.registry import ModelSpec, ResolvedChain
from tollgate.providers.base import Provider
from tollgate.providers.errors import ProviderNotConfigured, UpstreamError

T = TypeVar("T")


class ProviderLookup(Protocol):
    def get(self, name: str) -> Provider:
        """The configured provider called ``name``; ``ProviderNotConfigured`` otherwise."""
        ...


class FailedAttempt(Struct, frozen=True):
    """A model of the chain that did not answer, for the request record and the logs."""

    model: str
    code: str | None
    status: int | None
    detail: str


class Answered(Struct, Generic[T], frozen=True):
    """The result, the model that produced it, and the models that failed before it."""

    value: T
    model: ModelSpec
    failed: tuple[FailedAttempt, ...] = ()

    @property
    def fell_back(self) -> bool:
        return bool(self.failed)


def call_with_fallback(
    chain: ResolvedChain | Sequence[ModelSpec],
    providers: ProviderLookup,
    invoke: Callable[[Provider, ModelSpec], T],
) -> Answered[T]:
    """Call ``invoke(provider, model)`` for each model of ``chain`` in turn until one answers.

    When every model fails, the last real provider failure is raised (rather than a later
    "not configured"), with the models tried in its ``extra["attempts"]`` (names and provider
    statuses only, never prompt text)."""
    models = chain.models if isinstance(chain, ResolvedChain) else tuple(chain)
    if not models:
        raise ProviderNotConfigured("any", "no model to try")
    failed: list[FailedAttempt] = []
    worst: UpstreamError | None = None
    for spec in models:
        try:
            provider = providers.get(spec.provider)
            return Answered(invoke(provider, spec), spec, tuple(failed))
        except UpstreamError as exc:
            failed.append(FailedAttempt(spec.name, exc.upstream_code, exc.upstream_status, exc.detail))
            if not exc.fallback_ok:
                _note_attempts(exc, failed)
                raise
            # A real provider failure says more than "not configured": keep it to report.
            if worst is None or not isinstance(exc, ProviderNotConfigured):
                worst = exc
    assert worst is not None
    _note_attempts(worst, failed)
    raise worst


def _note_attempts(error: UpstreamError, failed: list[FailedAttempt]) -> None:
    if len(failed) > 1:
        error.extra["attempts"] = [
            {"model": f.model, "code": f.code, "provider_status": f.status} for f in failed
        ]
