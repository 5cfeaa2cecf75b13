"""Usage analytics (S9) on in-memory aggregates: date ranges, grouping, user scopes, the
monthly rollup (idempotent, late, partial ranges) and the log browser's cursor. No AWS."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from msgspec.structs import replace

from tests.fakes import MemoryUsageStore
from tests.unit.test_usage_figures import entry, failed
from tollgate.clock import FixedClock
from tollgate.errors import InvalidRequest, NotFound, ValidationFailed
from tollgate.identity.models import Caller, Org, Role
from tollgate.usage.aggregates import Month
from tollgate.usage.analytics import DateRange, GroupBy, UsageAnalytics, UsageScope, scope_for
from tollgate.usage.figures import UsageFigures, figures_of, total
from tollgate.usage.log import LogFilter, UsageLogEntry, UsageStatus

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TODAY = NOW.date()


def analytics(store: MemoryUsageStore, now: datetime = NOW) -> UsageAnalytics:
    return UsageAnalytics(store, store, FixedClock(now))


def traffic(store: MemoryUsageStore, days: int = 90, per_day: int = 3) -> list[UsageLogEntry]:
    """``per_day`` requests a day for ``days`` days up to today: two users, three models,
    two features, some cached, some failed."""
    made = []
    for back in range(days):
        for i in range(per_day):
            n = back * per_day + i
            logged = entry(
                request_id=f"req-{n:05d}",
                at=NOW - timedelta(days=back, minutes=i),
                user=("alice", "bob")[n % 2],
                model=("mock/chat", "openai/gpt-4o-mini", "mock/embed")[n % 3],
                provider=("mock", "openai", "mock")[n % 3],
                feature=("chat", "embedding")[n % 3 == 2],
                credits=100 + n,
                cost_micro_usd=10 + n,
                latency_ms=20 + (n % 7) * 100,
                cache_hit=n % 5 == 0,
            )
            if n % 11 == 0:
                logged = replace(failed("provider_error"), request_id=logged.request_id, at=logged.at)
            store.record(logged)
            made.append(logged)
    return made


def sums_by(entries: list[UsageLogEntry], key: str) -> dict[str, UsageFigures]:
    groups: dict[str, list[UsageLogEntry]] = defaultdict(list)
    for e in entries:
        groups[e.at.date().isoformat() if key == "day" else getattr(e, key)].append(e)
    return {k: total(figures_of(e) for e in v) for k, v in groups.items()}


# -- date ranges --------------------------------------------------------------------------------


def test_the_default_range_is_the_last_30_days() -> None:
    period = DateRange.of(None, None, TODAY)
    assert (period.start, period.end, period.days) == (TODAY - timedelta(days=29), TODAY, 30)


def test_a_range_from_a_day_runs_30_days_or_to_today() -> None:
    assert DateRange.of(date(2026, 1, 1), None, TODAY).end == date(2026, 1, 30)
    assert DateRange.of(date(2026, 3, 1), None, TODAY).end == TODAY


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (date(2026, 3, 5), date(2026, 3, 4), "query.from"),
        (None, TODAY + timedelta(days=1), "query.to"),
        (date(2025, 1, 1), date(2026, 3, 1), "query.from"),  # more than 366 days
    ],
)
def test_bad_ranges_are_refused_naming_the_field(start: date | None, end: date | None, field: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        DateRange.of(start, end, TODAY)
    assert [e.field for e in refused.value.errors] == [field]


def test_full_months_are_those_entirely_inside() -> None:
    period = DateRange(date(2025, 12, 11), date(2026, 3, 10))
    assert period.full_months() == [Month(2026, 1), Month(2026, 2)]
    assert DateRange(date(2026, 2, 1), date(2026, 2, 28)).full_months() == [Month(2026, 2)]
    assert DateRange(date(2026, 2, 2), date(2026, 2, 28)).full_months() == []


def test_months_step_over_years() -> None:
    assert Month(2025, 12).next() == Month(2026, 1)
    assert Month(2026, 1).previous() == Month(2025, 12)
    assert Month(2024, 2).last_day == date(2024, 2, 29)
    assert Month.parse("2026-03") == Month(2026, 3)
    assert str(Month(2026, 3)) == "2026-03"


# -- reports ------------------------------------------------------------------------------------


@pytest.mark.parametrize("group_by", ["day", "model", "provider", "feature", "user"])
def test_every_group_is_the_sum_of_its_entries(group_by: str) -> None:
    # Given 90 days of mixed traffic
    store = MemoryUsageStore()
    entries = traffic(store)
    period = DateRange(TODAY - timedelta(days=89), TODAY)
    # When the org's report is asked for
    report = analytics(store).report(UsageScope("org_1"), period, GroupBy(group_by))
    # Then each group equals the sum of its entries, and the total the sum of everything
    expected = sums_by(entries, group_by)
    got = {g.key: g.figures for g in report.groups if not g.figures.is_empty}
    assert got == expected
    assert report.total == total(figures_of(e) for e in entries)


def test_days_come_in_order_with_empty_days_present() -> None:
    store = MemoryUsageStore()
    store.record(entry(at=NOW - timedelta(days=2)))
    report = analytics(store).report(
        UsageScope("org_1"), DateRange(TODAY - timedelta(days=3), TODAY), GroupBy.DAY
    )
    assert [g.key for g in report.groups] == [(TODAY - timedelta(days=d)).isoformat() for d in (3, 2, 1, 0)]
    assert [g.figures.requests for g in report.groups] == [0, 1, 0, 0]


@pytest.mark.parametrize("group_by", ["day", "model", "provider", "feature", "user"])
def test_a_users_report_holds_only_its_own_requests(group_by: str) -> None:
    store = MemoryUsageStore()
    entries = traffic(store, days=20)
    period = DateRange(TODAY - timedelta(days=19), TODAY)
    report = analytics(store).report(UsageScope("org_1", "alice"), period, GroupBy(group_by))
    alices = [e for e in entries if e.user == "alice"]
    got = {g.key: g.figures for g in report.groups if not g.figures.is_empty}
    assert got == sums_by(alices, group_by)
    assert report.total.requests == len(alices) < len(entries)


def test_another_orgs_usage_is_not_in_a_report() -> None:
    store = MemoryUsageStore()
    store.record(entry(org_id="org_2"))
    report = analytics(store).report(UsageScope("org_1"), DateRange(TODAY, TODAY), GroupBy.MODEL)
    assert report.groups == ()
    assert report.total.is_empty


# -- the monthly rollup -------------------------------------------------------------------------


def test_the_rollup_makes_long_reports_read_months_and_stay_exact() -> None:
    # Given 90 days of traffic, and the report before any rollup (days only)
    store = MemoryUsageStore()
    entries = traffic(store)
    period = DateRange(TODAY - timedelta(days=89), TODAY)
    service = analytics(store)
    before = service.report(UsageScope("org_1"), period, GroupBy.MODEL)
    read_by_days, store.reads = store.reads, 0
    # When the closed months are rolled up
    rolled = service.rollup("org_1")
    # Then those months are marked, and the same report reads fewer rows with the same figures
    assert rolled[-1] == Month(2026, 2)
    store.reads = 0
    after = service.report(UsageScope("org_1"), period, GroupBy.MODEL)
    assert after == before
    assert store.reads < read_by_days / 2
    assert after.total == total(figures_of(e) for e in entries)
    # And a user's report uses the user's own monthly rows, exactly too
    own = service.report(UsageScope("org_1", "bob"), period, GroupBy.FEATURE)
    assert own.total == total(figures_of(e) for e in entries if e.user == "bob")


def test_the_rollup_twice_changes_nothing() -> None:
    store = MemoryUsageStore()
    traffic(store, days=70)
    service = analytics(store)
    first = service.rollup("org_1")
    months_after_first = dict(store.months)
    assert first
    assert service.rollup("org_1") == []
    assert store.months == months_after_first


def test_a_month_is_rolled_up_only_after_its_grace_period() -> None:
    store = MemoryUsageStore()
    store.record(entry(at=datetime(2026, 2, 28, 23, 59, tzinfo=UTC)))
    # At 00:30 on March 1st February is closed but inside the grace period
    early = analytics(store, datetime(2026, 3, 1, 0, 30, tzinfo=UTC)).rollup("org_1")
    assert Month(2026, 2) not in early
    # At 01:30 it is rolled up
    late = analytics(store, datetime(2026, 3, 1, 1, 30, tzinfo=UTC)).rollup("org_1")
    assert Month(2026, 2) in late
    (mark,) = [m for m in store.rollup_marks("org_1") if m.month == Month(2026, 2)]
    assert mark.requests == 1


def test_a_late_rollup_catches_up_every_missed_month() -> None:
    store = MemoryUsageStore()
    for month in (10, 11, 12):
        store.record(entry(at=datetime(2025, month, 15, tzinfo=UTC), request_id=f"r{month}"))
    rolled = analytics(store).rollup("org_1")
    assert {Month(2025, 10), Month(2025, 11), Month(2025, 12), Month(2026, 1), Month(2026, 2)} <= set(rolled)


def test_a_month_without_its_mark_is_read_from_days() -> None:
    # Given rolled-up months, then one month's mark lost (a rollup that died before the mark)
    store = MemoryUsageStore()
    entries = traffic(store)
    service = analytics(store)
    service.rollup("org_1")
    del store.marks[("org_1", "2026-01")]
    # Then the report is still exact (January is read day by day, not from its month rows)
    period = DateRange(TODAY - timedelta(days=89), TODAY)
    report = service.report(UsageScope("org_1"), period, GroupBy.FEATURE)
    assert report.total == total(figures_of(e) for e in entries)


# -- the log browser ----------------------------------------------------------------------------


def test_logs_page_through_days_newest_first() -> None:
    # Given 5 days of 3 requests each
    store = MemoryUsageStore()
    entries = traffic(store, days=5)
    service = analytics(store)
    period = DateRange(TODAY - timedelta(days=4), TODAY)
    # When the log is read 4 at a time
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = service.logs(UsageScope("org_1"), period, LogFilter(), 4, cursor)
        assert len(page.entries) <= 4
        seen.extend(e.request_id for e in page.entries)
        cursor = page.next_cursor
        if cursor is None:
            break
    # Then every entry comes once, newest first
    expected = [e.request_id for e in sorted(entries, key=lambda e: e.at, reverse=True)]
    assert seen == expected


def test_a_members_log_is_its_own_whatever_the_filter() -> None:
    store = MemoryUsageStore()
    traffic(store, days=3)
    page = analytics(store).logs(
        UsageScope("org_1", "alice"),
        DateRange(TODAY - timedelta(days=2), TODAY),
        LogFilter(user="bob"),
        50,
        None,
    )
    assert page.entries
    assert {e.user for e in page.entries} == {"alice"}


def test_log_filters_apply() -> None:
    store = MemoryUsageStore()
    traffic(store, days=3)
    period = DateRange(TODAY - timedelta(days=2), TODAY)
    page = analytics(store).logs(UsageScope("org_1"), period, LogFilter(status=UsageStatus.FAILED), 50, None)
    assert page.entries
    assert all(e.status is UsageStatus.FAILED for e in page.entries)


def test_a_cursor_of_another_org_user_or_range_is_refused() -> None:
    store = MemoryUsageStore()
    traffic(store, days=3)
    service = analytics(store)
    period = DateRange(TODAY - timedelta(days=2), TODAY)
    cursor = service.logs(UsageScope("org_1", "alice"), period, LogFilter(), 1, None).next_cursor
    assert cursor is not None
    for scope, within in (
        (UsageScope("org_2", "alice"), period),
        (UsageScope("org_1", "bob"), period),
        (UsageScope("org_1"), period),
        (UsageScope("org_1", "alice"), DateRange(TODAY - timedelta(days=9), TODAY - timedelta(days=5))),
    ):
        with pytest.raises(InvalidRequest):
            service.logs(scope, within, LogFilter(), 1, cursor)
    for garbage in ("x", "eyJ9", "bm90IGpzb24"):
        with pytest.raises(InvalidRequest):
            service.logs(UsageScope("org_1", "alice"), period, LogFilter(), 1, garbage)


# -- who sees what ------------------------------------------------------------------------------


class Orgs:
    def get_org(self, caller: Caller, org_id: str) -> Org:
        if org_id != "org_1" or not caller.is_admin:
            raise NotFound("no such org")
        return Org(org_id="org_1", name="Acme", plan="starter", created_at=NOW)


def test_scopes_follow_the_roles() -> None:
    owner = Caller("key_o", "olga", Role.OWNER, "org_1", "starter")
    member = Caller("key_m", "alice", Role.MEMBER, "org_1", "starter")
    admin = Caller("key_a", "admin", Role.ADMIN)
    assert scope_for(owner, None, None, Orgs())[1] == UsageScope("org_1")
    assert scope_for(owner, None, "bob", Orgs())[1] == UsageScope("org_1", "bob")
    assert scope_for(member, None, None, Orgs())[1] == UsageScope("org_1", "alice")
    assert scope_for(member, None, "alice", Orgs())[1] == UsageScope("org_1", "alice")
    assert scope_for(admin, "org_1", None, Orgs())[1] == UsageScope("org_1")
    with pytest.raises(NotFound):
        scope_for(member, None, "bob", Orgs())
    with pytest.raises(NotFound):
        scope_for(owner, "org_2", None, Orgs())
    with pytest.raises(ValidationFailed):
        scope_for(admin, None, None, Orgs())
