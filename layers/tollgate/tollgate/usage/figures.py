"""Usage figures (S9): the integer sums analytics keep, and what is derived from them.

Every usage log entry contributes one ``UsageFigures`` (``figures_of``); aggregates are sums of
them, and sums add up: the figures of a group are exactly the sum of its entries' figures.
Everything is an integer: provider cost in micro-USD, credits in units of 1/10,000 credit,
latency in milliseconds, and a fixed-bucket latency histogram, so that percentiles come from
aggregates without the entries (to the precision of a bucket, see ``percentile``).

Latency percentiles and the latency sum count **successful** requests only: a refusal answers
in a few milliseconds and would make the gateway look faster than the answers people wait for.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from msgspec import Struct, field
from msgspec.structs import fields

from tollgate.units import CREDIT_UNITS
from tollgate.usage.log import UsageLogEntry, UsageStatus

LATENCY_BUCKETS_MS: tuple[int, ...] = (
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    120_000,
    300_000,
    900_000,
)
"""Upper bounds (inclusive, ms) of the latency histogram's buckets. Bucket ``i`` counts the
latencies in ``(bound[i-1], bound[i]]``; one more bucket counts anything above the last bound
(nothing should: 900 s is Lambda's longest timeout). Changing the bounds changes what stored
aggregates mean: add buckets only at the end."""

HISTOGRAM_SIZE = len(LATENCY_BUCKETS_MS) + 1

PROVIDER_ERROR_CODES = frozenset({"provider_error"})
INTERNAL_ERROR_CODES = frozenset({"service_unavailable"})
# Entries written without an error code (older writers) are classified by their error class.
_PROVIDER_ERROR_CLASSES = frozenset(
    {"ProviderError", "ProviderTimeout", "UpstreamError", "UpstreamTimeout", "ProviderNotConfigured"}
)
_REFUSAL_CLASSES = frozenset(
    {
        "RateLimited",
        "QuotaExceeded",
        "InsufficientCredits",
        "ContentBlocked",
        "PayloadTooLarge",
        "InvalidRequest",
        "ValidationFailed",
        "UnknownFeature",
        "UnknownPrice",
    }
)


class Outcome(StrEnum):
    """How a request ended, as analytics count it."""

    SUCCESS = "success"  # answered (by the provider or from the cache)
    REFUSED = "refused"  # Tollgate said no before any provider call: limits, credits, content, input
    PROVIDER_ERROR = "provider_error"  # the provider (every model of the fallback chain) failed
    FAILED = "failed"  # anything else (an internal or storage failure)


def outcome_of(entry: UsageLogEntry) -> Outcome:
    """The outcome of a logged request, from its status and its error's stable problem code."""
    if entry.status is UsageStatus.COMPLETED:
        return Outcome.SUCCESS
    code = entry.error_code
    if code is None:
        if entry.error_class in _PROVIDER_ERROR_CLASSES:
            return Outcome.PROVIDER_ERROR
        if entry.error_class in _REFUSAL_CLASSES:
            return Outcome.REFUSED
        return Outcome.FAILED
    if code in PROVIDER_ERROR_CODES:
        return Outcome.PROVIDER_ERROR
    if code in INTERNAL_ERROR_CODES:
        return Outcome.FAILED
    return Outcome.REFUSED


def latency_bucket(latency_ms: int) -> int:
    """The histogram bucket of a latency (``len(LATENCY_BUCKETS_MS)`` for one above them all)."""
    return bisect_left(LATENCY_BUCKETS_MS, max(0, latency_ms))


def _zeros() -> tuple[int, ...]:
    return (0,) * HISTOGRAM_SIZE


class UsageFigures(Struct, frozen=True):
    """Integer sums over a set of requests. ``failures`` counts every request that did not
    succeed; ``refusals`` and ``provider_errors`` are the failures of those two kinds."""

    requests: int = 0
    successes: int = 0
    failures: int = 0
    refusals: int = 0
    provider_errors: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micro_usd: int = 0
    credits: int = 0
    latency_ms_sum: int = 0  # of successful requests
    latency_histogram: tuple[int, ...] = field(default_factory=_zeros)  # of successful requests

    def __post_init__(self) -> None:
        if len(self.latency_histogram) != HISTOGRAM_SIZE:
            raise ValueError(f"a latency histogram has {HISTOGRAM_SIZE} buckets")

    def __add__(self, other: UsageFigures) -> UsageFigures:
        return UsageFigures(
            **{name: getattr(self, name) + getattr(other, name) for name in COUNTERS},
            latency_histogram=tuple(
                a + b for a, b in zip(self.latency_histogram, other.latency_histogram, strict=True)
            ),
        )

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def is_empty(self) -> bool:
        return self.requests == 0

    def percentile(self, percent: int) -> int | None:
        """The ``percent``-th latency percentile of successful requests, as the upper bound of
        the bucket it falls in: ``percent`` % of them took at most this many milliseconds
        (exact as such a statement; the true value lies within that bucket). ``None`` without
        successes. The overflow bucket reports the last bound."""
        if not 0 < percent <= 100:
            raise ValueError("a percentile is in (0, 100]")
        count = sum(self.latency_histogram)
        if count == 0:
            return None
        rank = -(-percent * count // 100)  # the ceil(p% of n)-th latency, 1-based
        seen = 0
        for index, in_bucket in enumerate(self.latency_histogram):
            seen += in_bucket
            if seen >= rank:
                return LATENCY_BUCKETS_MS[min(index, len(LATENCY_BUCKETS_MS) - 1)]
        raise AssertionError("unreachable: the ranks add up to the count")  # pragma: no cover

    def cache_hit_rate(self) -> Decimal | None:
        """Share of successful requests answered from the cache, 4 decimals (rounded down)."""
        if self.successes == 0:
            return None
        return _ratio(self.cache_hits, self.successes)

    def mean_latency_ms(self) -> int | None:
        """Mean latency of successful requests in whole milliseconds (rounded down)."""
        return self.latency_ms_sum // self.successes if self.successes else None

    def to_counters(self) -> dict[str, int]:
        """Every sum by its storage name (histogram buckets as ``lat_00``...)."""
        stored = {name: getattr(self, name) for name in COUNTERS}
        stored.update({bucket_name(i): n for i, n in enumerate(self.latency_histogram)})
        return stored

    @classmethod
    def from_counters(cls, stored: Mapping[str, object]) -> UsageFigures:
        """The inverse of ``to_counters`` (absent names are 0)."""

        def number(name: str) -> int:
            value = stored.get(name, 0)
            return int(value) if isinstance(value, int | Decimal) else 0

        return cls(
            **{name: number(name) for name in COUNTERS},
            latency_histogram=tuple(number(bucket_name(i)) for i in range(HISTOGRAM_SIZE)),
        )


COUNTERS: tuple[str, ...] = tuple(f.name for f in fields(UsageFigures) if f.name != "latency_histogram")


def bucket_name(index: int) -> str:
    return f"lat_{index:02d}"


def _ratio(part: int, whole: int) -> Decimal:
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), rounding=ROUND_FLOOR)


def figures_of(entry: UsageLogEntry) -> UsageFigures:
    """What one logged request adds to every aggregate it belongs to."""
    outcome = outcome_of(entry)
    success = outcome is Outcome.SUCCESS
    histogram = [0] * HISTOGRAM_SIZE
    if success:
        histogram[latency_bucket(entry.latency_ms)] = 1
    return UsageFigures(
        requests=1,
        successes=int(success),
        failures=int(not success),
        refusals=int(outcome is Outcome.REFUSED),
        provider_errors=int(outcome is Outcome.PROVIDER_ERROR),
        cache_hits=int(success and entry.cache_hit),
        input_tokens=entry.input_tokens,
        output_tokens=entry.output_tokens,
        cost_micro_usd=entry.cost_micro_usd,
        credits=entry.credits,
        latency_ms_sum=entry.latency_ms if success else 0,
        latency_histogram=tuple(histogram),
    )


def total(figures: Iterable[UsageFigures]) -> UsageFigures:
    result = UsageFigures()
    for each in figures:
        result = result + each
    return result


def revenue_micro_usd(credit_units: int, micro_usd_per_credit: int) -> int:
    """What credits are worth in micro-USD at the conversion rate of ``data/features.toml``,
    rounded down (a margin is never overstated)."""
    return credit_units * micro_usd_per_credit // CREDIT_UNITS


def margin_micro_usd(figures: UsageFigures, micro_usd_per_credit: int) -> int:
    """Credits charged, in micro-USD at the conversion rate, less the provider cost."""
    return revenue_micro_usd(figures.credits, micro_usd_per_credit) - figures.cost_micro_usd


__all__ = [
    "COUNTERS",
    "HISTOGRAM_SIZE",
    "LATENCY_BUCKETS_MS",
    "Outcome",
    "UsageFigures",
    "bucket_name",
    "figures_of",
    "latency_bucket",
    "margin_micro_usd",
    "outcome_of",
    "revenue_micro_usd",
    "total",
]
