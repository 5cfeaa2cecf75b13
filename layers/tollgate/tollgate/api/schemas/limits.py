"""Bodies of ``GET /v1/limits``: the caller's verdict and every limit that applies to it.

"Allowed" here means: a request of any kind would pass the limits that apply to every request
(those not narrowed to a kind or a provider). A narrowed limit that is exhausted only blocks
its own kind or provider; it is listed with ``remaining: 0`` but does not make the caller
blocked (``GET /v1/credits/availability?feature=`` answers for one feature).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from tollgate.api.schemas.common import ResponseModel
from tollgate.api.schemas.credits import LimitOut

if TYPE_CHECKING:  # annotations only: the metering models load with the metering service
    from tollgate.metering.models import LimitStatus


def _refusal_code(status: LimitStatus) -> str:
    return "rate_limited" if status.metric == "requests" else "quota_exceeded"


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


class LimitsOut(ResponseModel):
    """``allowed``; when not, the ``reason`` (``rate_limited`` or ``quota_exceeded``), the
    seconds until a request would pass again (``retry_after``) and the limit that blocks
    longest (``blocking``); then every applicable limit with its max, used and reset time."""

    allowed: bool
    reason: str | None
    retry_after: int | None
    blocking: LimitOut | None
    limits: list[LimitOut]

    @classmethod
    def of(cls, statuses: Sequence[LimitStatus], now: datetime) -> LimitsOut:
        blocking = _blocking(statuses)
        return cls(
            allowed=blocking is None,
            reason=_refusal_code(blocking) if blocking else None,
            retry_after=_seconds_until(blocking.resets_at, now) if blocking else None,
            blocking=LimitOut.of(blocking) if blocking else None,
            limits=[LimitOut.of(s) for s in statuses],
        )


def _general(statuses: Sequence[LimitStatus]) -> list[LimitStatus]:
    return [s for s in statuses if s.kind is None and s.provider is None]


def _blocking(statuses: Sequence[LimitStatus]) -> LimitStatus | None:
    """Of the exhausted general limits, the one that frees up last (every one must free up)."""
    exhausted = [s for s in _general(statuses) if s.remaining <= 0]
    return max(exhausted, key=lambda s: s.resets_at) if exhausted else None


def rate_limit_headers(statuses: Sequence[LimitStatus], now: datetime) -> dict[str, str]:
    """``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds) of the
    general request limit closest to exhaustion, and ``Retry-After`` when the caller is blocked.
    The same headers a ``429`` refusal carries."""
    headers: dict[str, str] = {}
    requests = [s for s in _general(statuses) if s.metric == "requests"]
    if requests:
        nearest = min(requests, key=lambda s: (s.remaining, s.resets_at))
        headers["RateLimit-Limit"] = str(nearest.max)
        headers["RateLimit-Remaining"] = str(max(0, nearest.remaining))
        headers["RateLimit-Reset"] = str(_seconds_until(nearest.resets_at, now))
    blocking = _blocking(statuses)
    if blocking is not None:
        headers["Retry-After"] = str(_seconds_until(blocking.resets_at, now))
    return headers
