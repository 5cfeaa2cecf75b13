"""Quota windows: UTC calendar hours, days and months with a billing anchor; rollover on time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tollgate.clock import FixedClock
from tollgate.metering.limits import applicable_limits, merge_limits
from tollgate.metering.windows import QuotaWindow, add_months, billing_cycle
from tollgate.plans import LimitSpec


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_hour_and_day_windows_are_utc_calendar_windows() -> None:
    # Given a moment in a non-UTC zone
    moment = datetime(2025, 3, 10, 23, 30, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))

    # Then the windows are still the UTC hour and the UTC day
    hour = QuotaWindow.containing("hour", moment)
    day = QuotaWindow.containing("day", moment)
    assert (hour.start, hour.end, hour.key) == (at(2025, 3, 10, 23), at(2025, 3, 11), "h2025031023")
    assert (day.start, day.end, day.key) == (at(2025, 3, 10), at(2025, 3, 11), "d20250310")


def test_a_counter_rolls_over_to_a_new_key_when_the_clock_passes_the_hour() -> None:
    # Given an hourly org limit and a clock one second before the hour
    clock = FixedClock(at(2025, 3, 10, 13, 59, 59))
    specs = [LimitSpec(scope="org", metric="requests", window="hour", max=10)]

    def counter_now() -> str:
        (limit,) = applicable_limits(
            specs, org_id="org_1", user="u", kind="chat", provider="openai", at=clock.now(), anchor_day=1
        )
        return limit.counter_key

    before = counter_now()
    # When the clock moves one second (no scheduler involved)
    clock.set(at(2025, 3, 10, 14, 0, 0))
    after = counter_now()

    # Then requests count in a different counter item: the window rolled over by its key alone
    assert before != after
    assert "h2025031013" in before
    assert "h2025031014" in after


@pytest.mark.parametrize(
    ("moment", "anchor", "start", "end"),
    [
        (at(2025, 1, 20), 15, at(2025, 1, 15), at(2025, 2, 15)),
        (at(2025, 1, 10), 15, at(2024, 12, 15), at(2025, 1, 15)),
        (at(2025, 1, 15), 15, at(2025, 1, 15), at(2025, 2, 15)),  # the anchor instant starts a cycle
        (at(2025, 2, 10), 31, at(2025, 1, 31), at(2025, 2, 28)),  # short month: its last day
        (at(2025, 3, 5), 31, at(2025, 2, 28), at(2025, 3, 31)),  # and back to the 31st after it
        (at(2024, 2, 29, 12), 30, at(2024, 2, 29), at(2024, 3, 30)),  # leap year
        (at(2025, 12, 31, 23, 59), 1, at(2025, 12, 1), at(2026, 1, 1)),  # calendar month, year end
    ],
)
def test_monthly_windows_follow_the_billing_anchor_day(
    moment: datetime, anchor: int, start: datetime, end: datetime
) -> None:
    # Given an org whose billing anchor is `anchor`, then the month around `moment` is [start, end)
    assert billing_cycle(moment, anchor) == (start, end)
    window = QuotaWindow.containing("month", moment, anchor)
    assert (window.start, window.end) == (start, end)


def test_anchor_day_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="anchor_day"):
        billing_cycle(at(2025, 1, 1), 32)


def test_retry_after_rounds_up_and_is_never_zero() -> None:
    # Given an hour window
    window = QuotaWindow.containing("hour", at(2025, 3, 10, 13, 0))

    # Then the seconds until it frees round up, and are at least 1
    assert window.seconds_until_end(at(2025, 3, 10, 13, 0)) == 3600
    assert window.seconds_until_end(at(2025, 3, 10, 13, 59, 59) + timedelta(microseconds=1)) == 1
    assert window.seconds_until_end(at(2025, 3, 10, 14, 0, 5)) == 1


def test_add_months_clamps_to_the_end_of_a_short_month() -> None:
    assert add_months(at(2025, 8, 31, 10), 6) == at(2026, 2, 28, 10)
    assert add_months(at(2025, 1, 15), 6) == at(2025, 7, 15)


def test_org_overrides_replace_a_plan_limit_or_add_one_and_narrowed_limits_apply_only_to_their_kind() -> None:
    # Given a plan with an org hourly limit and an image-only limit, and two overrides
    plan = [
        LimitSpec(scope="org", metric="requests", window="hour", max=100),
        LimitSpec(scope="org", metric="requests", window="hour", max=20, kind="image"),
    ]
    overrides = [
        LimitSpec(scope="org", metric="requests", window="hour", max=500),  # replaces the first
        LimitSpec(scope="user", metric="tokens", window="day", max=9_000, provider="openai"),  # added
    ]
    merged = merge_limits(plan, overrides)
    assert sorted((s.scope, s.metric, s.max) for s in merged) == [
        ("org", "requests", 20),
        ("org", "requests", 500),
        ("user", "tokens", 9_000),
    ]

    # When a chat request to anthropic is checked, then neither narrowed limit applies
    chat = applicable_limits(
        merged, org_id="o", user="ann", kind="chat", provider="anthropic", at=at(2025, 1, 1), anchor_day=1
    )
    assert [(limit.spec.max, limit.subject) for limit in chat] == [(500, "o")]
    # And an image request to openai by ann counts in all three, the user one under her name
    image = applicable_limits(
        merged, org_id="o", user="ann", kind="image", provider="openai", at=at(2025, 1, 1), anchor_day=1
    )
    assert sorted((limit.spec.max, limit.subject) for limit in image) == [
        (20, "o"),
        (500, "o"),
        (9_000, "ann"),
    ]
    assert len({limit.counter_key for limit in image}) == 3
