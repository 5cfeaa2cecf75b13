"""Usage figures (S9): what one request adds, how sums add up, percentiles from the latency
histogram, cache hit rate and margin. No AWS."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from msgspec.structs import replace

from tollgate.usage.figures import (
    HISTOGRAM_SIZE,
    LATENCY_BUCKETS_MS,
    Outcome,
    UsageFigures,
    figures_of,
    latency_bucket,
    margin_micro_usd,
    outcome_of,
    revenue_micro_usd,
    total,
)
from tollgate.usage.log import UsageLogEntry, UsageStatus

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def entry(**changes: object) -> UsageLogEntry:
    base = UsageLogEntry(
        request_id="req-1",
        org_id="org_1",
        user="alice",
        key_id="key_1",
        model="mock/chat",
        provider="mock",
        feature="chat",
        kind="chat",
        input_tokens=12,
        output_tokens=30,
        cost_micro_usd=42,
        credits=63,
        latency_ms=40,
        cache_hit=False,
        status=UsageStatus.COMPLETED,
        error_class=None,
        at=AT,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def failed(code: str | None, error_class: str = "X") -> UsageLogEntry:
    return entry(
        status=UsageStatus.FAILED, error_code=code, error_class=error_class, credits=0, cost_micro_usd=0
    )


@pytest.mark.parametrize(
    ("logged", "outcome"),
    [
        (entry(), Outcome.SUCCESS),
        (entry(cache_hit=True), Outcome.SUCCESS),
        (failed("rate_limited"), Outcome.REFUSED),
        (failed("insufficient_credits"), Outcome.REFUSED),
        (failed("content_blocked"), Outcome.REFUSED),
        (failed("provider_error"), Outcome.PROVIDER_ERROR),
        (failed("service_unavailable"), Outcome.FAILED),
        (failed(None, "RuntimeError"), Outcome.FAILED),
        # entries without a code (older writers) are classified by their error class
        (failed(None, "UpstreamTimeout"), Outcome.PROVIDER_ERROR),
        (failed(None, "QuotaExceeded"), Outcome.REFUSED),
    ],
)
def test_every_request_has_one_outcome(logged: UsageLogEntry, outcome: Outcome) -> None:
    assert outcome_of(logged) is outcome


def test_a_success_adds_its_tokens_money_and_latency_bucket() -> None:
    figures = figures_of(entry(latency_ms=40))
    assert (figures.requests, figures.successes, figures.failures) == (1, 1, 0)
    assert (figures.input_tokens, figures.output_tokens, figures.tokens) == (12, 30, 42)
    assert (figures.cost_micro_usd, figures.credits) == (42, 63)
    assert figures.latency_ms_sum == 40
    assert figures.latency_histogram[latency_bucket(40)] == 1
    assert sum(figures.latency_histogram) == 1


def test_a_refusal_counts_as_a_failure_without_latency() -> None:
    figures = figures_of(failed("rate_limited"))
    assert (figures.requests, figures.successes, figures.failures, figures.refusals) == (1, 0, 1, 1)
    assert figures.provider_errors == 0
    assert figures.latency_ms_sum == 0
    assert sum(figures.latency_histogram) == 0


def test_a_cache_hit_counts_only_when_answered() -> None:
    assert figures_of(entry(cache_hit=True)).cache_hits == 1
    assert figures_of(replace(failed("provider_error"), cache_hit=True)).cache_hits == 0


def test_latency_buckets_are_inclusive_upper_bounds() -> None:
    assert latency_bucket(0) == 0
    assert latency_bucket(10) == 0
    assert latency_bucket(11) == 1
    assert latency_bucket(LATENCY_BUCKETS_MS[-1]) == len(LATENCY_BUCKETS_MS) - 1
    assert latency_bucket(LATENCY_BUCKETS_MS[-1] + 1) == HISTOGRAM_SIZE - 1
    assert latency_bucket(-5) == 0


def test_sums_add_up_field_by_field() -> None:
    # Given random entries
    rng = random.Random(7)
    entries = [
        entry(
            latency_ms=rng.randint(0, 40_000),
            input_tokens=rng.randint(0, 999),
            output_tokens=rng.randint(0, 999),
            cost_micro_usd=rng.randint(0, 99_999),
            credits=rng.randint(0, 99_999),
            cache_hit=rng.random() < 0.3,
            status=UsageStatus.COMPLETED if rng.random() < 0.8 else UsageStatus.FAILED,
            error_code=None if rng.random() < 0.5 else "provider_error",
        )
        for _ in range(200)
    ]
    # When their figures are summed
    summed = total(figures_of(e) for e in entries)
    # Then every sum is the sum over the entries
    successes = [e for e in entries if e.status is UsageStatus.COMPLETED]
    assert summed.requests == 200
    assert summed.successes + summed.failures == 200
    assert summed.cost_micro_usd == sum(e.cost_micro_usd for e in entries)
    assert summed.credits == sum(e.credits for e in entries)
    assert summed.input_tokens == sum(e.input_tokens for e in entries)
    assert summed.latency_ms_sum == sum(e.latency_ms for e in successes)
    assert summed.cache_hits == sum(e.cache_hit for e in successes)
    assert sum(summed.latency_histogram) == len(successes)


def test_percentiles_are_the_upper_bound_of_their_bucket() -> None:
    # Given 100 answers: 50 in (10, 25], 45 in (50, 100], 5 in (1000, 2500]
    latencies = [20] * 50 + [80] * 45 + [2000] * 5
    figures = total(figures_of(entry(latency_ms=ms)) for ms in latencies)
    # Then p50 is 25 (the 50th is in the first bucket), p95 is 100, p96 and p100 are 2500
    assert figures.percentile(50) == 25
    assert figures.percentile(51) == 100
    assert figures.percentile(95) == 100
    assert figures.percentile(96) == 2500
    assert figures.percentile(100) == 2500
    # And each is an exact statement: at least p% of latencies are at most it
    for percent in (50, 95, 99):
        bound = figures.percentile(percent)
        assert bound is not None
        assert sum(ms <= bound for ms in latencies) * 100 >= percent * len(latencies)


def test_no_success_has_no_percentile_rate_or_mean() -> None:
    figures = figures_of(failed("rate_limited"))
    assert figures.percentile(50) is None
    assert figures.cache_hit_rate() is None
    assert figures.mean_latency_ms() is None
    with pytest.raises(ValueError, match="percentile"):
        figures.percentile(0)


def test_cache_hit_rate_has_four_decimals_rounded_down() -> None:
    figures = total([figures_of(entry(cache_hit=True))] + [figures_of(entry()) for _ in range(2)])
    assert figures.cache_hit_rate() == Decimal("0.3333")


def test_stored_counters_round_trip() -> None:
    figures = total(figures_of(entry(latency_ms=ms)) for ms in (5, 300, 300, 70_000))
    stored = figures.to_counters()
    assert all(isinstance(v, int) for v in stored.values())
    assert UsageFigures.from_counters(stored) == figures
    assert UsageFigures.from_counters({}) == UsageFigures()


def test_margin_is_revenue_at_the_conversion_rate_less_cost() -> None:
    # Given 1.5 credits charged at $0.01 per credit (10,000 micro-USD) and $0.004 of cost
    figures = UsageFigures(requests=1, credits=15_000, cost_micro_usd=4_000)
    # Then revenue is $0.015 and the margin $0.011
    assert revenue_micro_usd(15_000, 10_000) == 15_000
    assert margin_micro_usd(figures, 10_000) == 11_000
    # And a rate that does not divide evenly rounds the revenue down (never overstated)
    assert revenue_micro_usd(3, 3_333) == 0  # 3 units x 3,333 / 10,000 = 0.9999 micro-USD
    assert margin_micro_usd(UsageFigures(credits=1, cost_micro_usd=5), 10_000) == -4
