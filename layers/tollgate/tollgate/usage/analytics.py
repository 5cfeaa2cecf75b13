"""Usage analytics (S9): reports, the dashboard's figures, the log browser and the monthly
rollup, all read from aggregates (``tollgate.usage.aggregates``); only the log browser reads
log entries, a page at a time.

Who sees what (S2): an owner sees its org, and may narrow to one user; a member sees its own
user's figures only (read from that user's own aggregates, so another user's sums are never
even read); the admin names the org. Another org is ``404``; so is another user for a member.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum

from msgspec import Struct
from msgspec.structs import replace

from tollgate.clock import Clock, SystemClock
from tollgate.credits.access import OrgLookup, acting_for
from tollgate.errors import FieldError, InvalidRequest, NotFound, ValidationFailed
from tollgate.identity.models import Caller, Role
from tollgate.usage.aggregates import (
    ORG_DIMENSIONS,
    USER_DIMENSIONS,
    AggregateRow,
    Dimension,
    Month,
    RollupMark,
    UsageAggregates,
    day_of,
)
from tollgate.usage.figures import UsageFigures, total
from tollgate.usage.log import LogFilter, UsageLogEntry, UsageLogPages

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
DEFAULT_LOG_RANGE_DAYS = 7
MAX_LOG_READS_PER_PAGE = 20
"""A page of logs stops after this many queries (sparse filters, empty days) and hands back a
cursor to go on from: a request never turns into a long scan."""
ROLLUP_GRACE = timedelta(hours=1)
"""A month is rolled up this long after it ends: longer than any function's timeout, so no
request of that month can still be writing its day's aggregates."""
ROLLUP_LOOKBACK_MONTHS = 13


class GroupBy(StrEnum):
    DAY = "day"
    MODEL = "model"
    PROVIDER = "provider"
    FEATURE = "feature"
    USER = "user"


class UsageScope(Struct, frozen=True):
    """Whose usage: an org, or one user of it."""

    org_id: str
    user: str | None = None


def scope_for(
    caller: Caller, org_id: str | None, user: str | None, orgs: OrgLookup
) -> tuple[Caller, UsageScope]:
    """The usage ``caller`` may see, narrowed as asked, and the caller as it acts on that org.

    A member's scope is always its own user (naming another user is ``404``: it neither sees
    nor learns about other users); an owner's is its org, or one of its users; the admin must
    name the org. Another org is ``404`` (``acting_for``)."""
    acting, org = acting_for(caller, org_id, orgs)
    if caller.role is Role.MEMBER:
        if user is not None and user != caller.user:
            raise NotFound(f"No usage of user {user!r} here")
        return acting, UsageScope(org, caller.user)
    return acting, UsageScope(org, user)


class DateRange(Struct, frozen=True):
    """UTC days from ``start`` to ``end``, both included."""

    start: date
    end: date

    @classmethod
    def of(
        cls,
        start: date | None,
        end: date | None,
        today: date,
        *,
        default_days: int = DEFAULT_RANGE_DAYS,
        max_days: int = MAX_RANGE_DAYS,
    ) -> DateRange:
        """The range asked for, with defaults (the last ``default_days`` days up to today) and
        checks: ``from`` not after ``to``, ``to`` not after today, at most ``max_days`` days."""
        end = end or (today if start is None else min(today, start + timedelta(days=default_days - 1)))
        start = start or end - timedelta(days=default_days - 1)
        errors = []
        if end > today:
            errors.append(FieldError("query.to", "must not be after today (UTC)", "value_error"))
        if start > end:
            errors.append(FieldError("query.from", "must not be after to", "value_error"))
        elif (end - start).days + 1 > max_days:
            errors.append(FieldError("query.from", f"the range is at most {max_days} days", "value_error"))
        if errors:
            raise ValidationFailed(errors)
        return cls(start, end)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def each_day(self) -> Iterator[date]:
        for offset in range(self.days):
            yield self.start + timedelta(days=offset)

    def full_months(self) -> list[Month]:
        """The months that lie entirely inside the range."""
        months = []
        month = Month.of(self.start)
        if month.first_day < self.start:
            month = month.next()
        while month.last_day <= self.end:
            months.append(month)
            month = month.next()
        return months


class UsageGroup(Struct, frozen=True):
    key: str
    figures: UsageFigures


class UsageReport(Struct, frozen=True):
    """The groups of a report (days in order, every day present; other groups by key) and
    their total, which is exactly their sum."""

    scope: UsageScope
    range: DateRange
    group_by: GroupBy
    groups: tuple[UsageGroup, ...]
    total: UsageFigures


class Dashboard(Struct, frozen=True):
    """What the dashboard page shows of usage, in one read: the days, the models and the
    features of the range, and their total."""

    scope: UsageScope
    range: DateRange
    total: UsageFigures
    days: tuple[UsageGroup, ...]
    models: tuple[UsageGroup, ...]
    providers: tuple[UsageGroup, ...]
    features: tuple[UsageGroup, ...]


# -- logs ------------------------------------------------------------------------------------------


class LogPage(Struct, frozen=True):
    entries: tuple[UsageLogEntry, ...]
    next_cursor: str | None


def _encode_log_cursor(scope: UsageScope, day: date, position: str | None) -> str:
    raw = json.dumps(
        {"o": scope.org_id, "u": scope.user, "d": day.isoformat(), "p": position}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_log_cursor(scope: UsageScope, cursor: str, within: DateRange) -> tuple[date, str | None]:
    """The day and position a cursor points at; ``InvalidRequest`` (400) unless it was made for
    this org and user, and its day lies in the range asked for."""
    invalid = InvalidRequest("Invalid cursor: pass back the next_cursor of the previous page, same range")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        day = date.fromisoformat(data["d"])
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise invalid from None
    position = data.get("p")
    if (
        data.get("o") != scope.org_id
        or data.get("u") != scope.user
        or not within.start <= day <= within.end
        or not (position is None or (isinstance(position, str) and 0 < len(position) <= 400))
    ):
        raise invalid
    return day, position


# -- the service -----------------------------------------------------------------------------------


class UsageAnalytics:
    """Reports and the dashboard from aggregates; the log a page at a time; the rollup."""

    def __init__(
        self,
        aggregates: UsageAggregates,
        log: UsageLogPages,
        clock: Clock | None = None,
    ) -> None:
        self._aggregates = aggregates
        self._log = log
        self._clock = clock or SystemClock()

    def today(self) -> date:
        return day_of(self._clock.now())

    # -- reports ---------------------------------------------------------------------------------

    def report(self, scope: UsageScope, period: DateRange, group_by: GroupBy) -> UsageReport:
        """Figures per group over the range, read from aggregates (monthly rollups for whole
        months that have one, daily aggregates for the rest)."""
        reader = _RangeReader(self._aggregates, scope, period)
        groups = _grouped(reader, group_by)
        return UsageReport(scope, period, group_by, groups, total(g.figures for g in groups))

    def dashboard(self, scope: UsageScope, period: DateRange) -> Dashboard:
        """The days, models, providers and features of the range, in three or four reads."""
        reader = _RangeReader(self._aggregates, scope, period)
        days = _grouped(reader, GroupBy.DAY)
        models = _grouped(reader, GroupBy.MODEL)
        return Dashboard(
            scope=scope,
            range=period,
            total=total(g.figures for g in days),
            days=days,
            models=models,
            providers=_grouped(reader, GroupBy.PROVIDER),
            features=_grouped(reader, GroupBy.FEATURE),
        )

    # -- the log ---------------------------------------------------------------------------------

    def logs(
        self, scope: UsageScope, period: DateRange, filters: LogFilter, limit: int, cursor: str | None
    ) -> LogPage:
        """Log entries of the range, newest first, ``limit`` at most; ``next_cursor`` goes on.
        A member's filter is always its own user. A page may hold fewer entries than ``limit``
        (sparse filters): go on while ``next_cursor`` is set."""
        if scope.user is not None:
            filters = replace(filters, user=scope.user)
        day, after = _decode_log_cursor(scope, cursor, period) if cursor else (period.end, None)
        found: list[UsageLogEntry] = []
        reads = 0
        while day >= period.start:
            page = self._log.page(scope.org_id, day, filters, after, limit - len(found))
            reads += 1
            taken = page.entries[: limit - len(found)]
            found.extend(item.entry for item in taken)
            if len(found) >= limit:
                if len(taken) < len(page.entries) or page.more is not None:
                    return LogPage(tuple(found), _encode_log_cursor(scope, day, taken[-1].position))
                # the page ended exactly with the day: go on from the next day (if any)
                day -= timedelta(days=1)
                next_cursor = _encode_log_cursor(scope, day, None) if day >= period.start else None
                return LogPage(tuple(found), next_cursor)
            if page.more is not None:
                after = page.more
            else:
                day, after = day - timedelta(days=1), None
            if reads >= MAX_LOG_READS_PER_PAGE and day >= period.start:
                return LogPage(tuple(found), _encode_log_cursor(scope, day, after))
        return LogPage(tuple(found), None)

    # -- the scheduler's rollup ------------------------------------------------------------------

    def rollup(self, org_id: str, now: datetime | None = None) -> list[Month]:
        """Roll every closed month not rolled up yet (within ``ROLLUP_LOOKBACK_MONTHS``) into
        monthly aggregates: for each group, the sum of its days. Safe to run twice, late or
        concurrently: a month's rows are recomputed from its days, which no longer change
        (``ROLLUP_GRACE``), and written whole; the month's mark is written last, and reports
        use monthly rows only for marked months. Returns the months rolled up by this call."""
        now = now or self._clock.now()
        last_closed = Month.of(day_of(now - ROLLUP_GRACE)).previous()
        marked = {mark.month for mark in self._aggregates.rollup_marks(org_id)}
        months = []
        month = last_closed
        for _ in range(ROLLUP_LOOKBACK_MONTHS):
            if month not in marked:
                months.append(month)
            month = month.previous()
        for month in reversed(months):
            self._rollup_month(org_id, month, now)
        return sorted(months)

    def _rollup_month(self, org_id: str, month: Month, now: datetime) -> None:
        def roll(user: str | None, dimension: Dimension) -> list[AggregateRow]:
            days = self._aggregates.daily(org_id, user, dimension, month.first_day, month.last_day)
            summed = _monthly_sums(month, days)
            self._aggregates.put_monthly(org_id, user, dimension, summed)
            return summed

        written = {dimension: roll(None, dimension) for dimension in ORG_DIMENSIONS}
        rows = sum(len(each) for each in written.values())
        # The org's user rows name every user with usage that month: their own rows follow.
        for row in written[Dimension.USER]:
            for dimension in USER_DIMENSIONS:
                rows += len(roll(row.value, dimension))
        requests = sum(row.figures.requests for row in written[Dimension.TOTAL])
        self._aggregates.mark_rolled_up(org_id, RollupMark(month, requests, rows, now))


def _monthly_sums(month: Month, days: Sequence[AggregateRow]) -> list[AggregateRow]:
    sums: dict[str, UsageFigures] = defaultdict(UsageFigures)
    providers: dict[str, str | None] = {}
    for row in days:
        sums[row.value] = sums[row.value] + row.figures
        providers[row.value] = providers.get(row.value) or row.provider
    return [AggregateRow(str(month), value, sums[value], providers[value]) for value in sorted(sums)]


class _RangeReader:
    """Rows of a range for one scope, each dimension read once: monthly rows for the whole
    months that are rolled up, daily rows for every other day."""

    def __init__(self, aggregates: UsageAggregates, scope: UsageScope, period: DateRange) -> None:
        self._aggregates = aggregates
        self._scope = scope
        self._period = period
        self._daily: dict[Dimension, Sequence[AggregateRow]] = {}
        self._mixed: dict[Dimension, list[AggregateRow]] = {}
        self._marked: set[Month] | None = None

    @property
    def scope(self) -> UsageScope:
        return self._scope

    @property
    def period(self) -> DateRange:
        return self._period

    def daily(self, dimension: Dimension) -> Sequence[AggregateRow]:
        """Every day row of the range (for series by day)."""
        if dimension not in self._daily:
            self._daily[dimension] = self._aggregates.daily(
                self._scope.org_id, self._scope.user, dimension, self._period.start, self._period.end
            )
        return self._daily[dimension]

    def rows(self, dimension: Dimension) -> list[AggregateRow]:
        """Rows covering the range exactly once: months where rolled up, days elsewhere."""
        if dimension in self._mixed:
            return self._mixed[dimension]
        if dimension in self._daily:  # already read day by day: no need for more reads
            return list(self._daily[dimension])
        months = [m for m in self._period.full_months() if m in self._rolled_up()]
        rows: list[AggregateRow] = []
        for first, last in _runs(months):
            rows.extend(
                self._aggregates.monthly(self._scope.org_id, self._scope.user, dimension, first, last)
            )
        for start, end in _uncovered(self._period, months):
            rows.extend(self._aggregates.daily(self._scope.org_id, self._scope.user, dimension, start, end))
        self._mixed[dimension] = rows
        return rows

    def _rolled_up(self) -> set[Month]:
        if self._marked is None:
            full = self._period.full_months()
            self._marked = (
                {mark.month for mark in self._aggregates.rollup_marks(self._scope.org_id)} if full else set()
            )
        return self._marked


def _runs(months: Sequence[Month]) -> list[tuple[Month, Month]]:
    """Consecutive months as (first, last) runs."""
    runs: list[tuple[Month, Month]] = []
    for month in months:
        if runs and runs[-1][1].next() == month:
            runs[-1] = (runs[-1][0], month)
        else:
            runs.append((month, month))
    return runs


def _uncovered(period: DateRange, months: Sequence[Month]) -> list[tuple[date, date]]:
    """The day spans of ``period`` outside ``months``."""
    spans: list[tuple[date, date]] = []
    cursor = period.start
    for month in months:
        if cursor < month.first_day:
            spans.append((cursor, month.first_day - timedelta(days=1)))
        cursor = month.last_day + timedelta(days=1)
    if cursor <= period.end:
        spans.append((cursor, period.end))
    return spans


def _provider_of(row: AggregateRow) -> str:
    return row.provider or row.value.partition("/")[0]


# Which rows a grouping reads, and the key of each row's group, by scope. A user's scope has
# only its own model and feature rows: every grouping of its figures is a regrouping of those.
_ORG_SOURCES: dict[GroupBy, tuple[Dimension, Callable[[AggregateRow, UsageScope], str]]] = {
    GroupBy.DAY: (Dimension.TOTAL, lambda row, _: row.period),
    GroupBy.MODEL: (Dimension.MODEL, lambda row, _: row.value),
    GroupBy.PROVIDER: (Dimension.MODEL, lambda row, _: _provider_of(row)),
    GroupBy.FEATURE: (Dimension.FEATURE, lambda row, _: row.value),
    GroupBy.USER: (Dimension.USER, lambda row, _: row.value),
}
_USER_SOURCES: dict[GroupBy, tuple[Dimension, Callable[[AggregateRow, UsageScope], str]]] = {
    **_ORG_SOURCES,
    GroupBy.DAY: (Dimension.MODEL, lambda row, _: row.period),
    GroupBy.USER: (Dimension.MODEL, lambda _, scope: str(scope.user)),
}


def _grouped(reader: _RangeReader, group_by: GroupBy) -> tuple[UsageGroup, ...]:
    sources = _USER_SOURCES if reader.scope.user is not None else _ORG_SOURCES
    dimension, key_of = sources[group_by]
    rows = reader.daily(dimension) if group_by is GroupBy.DAY else reader.rows(dimension)
    sums: dict[str, UsageFigures] = defaultdict(UsageFigures)
    for row in rows:
        key = key_of(row, reader.scope)
        sums[key] = sums[key] + row.figures
    if group_by is GroupBy.DAY:
        return tuple(
            UsageGroup(day.isoformat(), sums.get(day.isoformat(), UsageFigures()))
            for day in reader.period.each_day()
        )
    return tuple(UsageGroup(key, sums[key]) for key in sorted(sums))


__all__ = [
    "DEFAULT_LOG_RANGE_DAYS",
    "DEFAULT_RANGE_DAYS",
    "MAX_RANGE_DAYS",
    "Dashboard",
    "DateRange",
    "GroupBy",
    "LogPage",
    "UsageAnalytics",
    "UsageGroup",
    "UsageReport",
    "UsageScope",
    "scope_for",
]
