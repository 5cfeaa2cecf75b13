"""Usage aggregates (S9): which sums a request adds to, and where analytics read them.

Every request adds its ``UsageFigures`` to a few aggregates of its UTC day, in the same
transaction as its log entry (``tollgate.aws.usage_store``):

- org-wide: ``total``, its ``model`` (which also carries the model's provider, so by-provider
  figures are by-model figures regrouped), its ``feature`` and its ``user``;
- the user's own: its ``model`` and its ``feature`` (a member's reports read only these, so it
  never reads another user's sums).

That is six aggregates per request. A closed month is rolled up into one monthly aggregate per
group (``rollup``), so a long report reads a few items per group and month, not one per day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from msgspec import Struct

from tollgate.usage.figures import UsageFigures
from tollgate.usage.log import UsageLogEntry


class Dimension(StrEnum):
    """What an aggregate groups by."""

    TOTAL = "total"
    MODEL = "model"
    FEATURE = "feature"
    USER = "user"


ORG_DIMENSIONS: tuple[Dimension, ...] = (Dimension.TOTAL, Dimension.MODEL, Dimension.FEATURE, Dimension.USER)
USER_DIMENSIONS: tuple[Dimension, ...] = (Dimension.MODEL, Dimension.FEATURE)
TOTAL_VALUE = "all"
"""The one group of the ``total`` dimension."""


class AggregateKey(Struct, frozen=True):
    """One aggregate a request adds to: org-wide (``user`` is ``None``) or one user's own."""

    dimension: Dimension
    value: str
    user: str | None = None


def aggregate_keys(entry: UsageLogEntry) -> tuple[AggregateKey, ...]:
    """The aggregates of ``entry``'s day that ``entry`` adds to."""
    values = {
        Dimension.TOTAL: TOTAL_VALUE,
        Dimension.MODEL: entry.model,
        Dimension.FEATURE: entry.feature,
        Dimension.USER: entry.user,
    }
    org = tuple(AggregateKey(dimension, values[dimension]) for dimension in ORG_DIMENSIONS)
    own = tuple(AggregateKey(dimension, values[dimension], entry.user) for dimension in USER_DIMENSIONS)
    return org + own


def day_of(moment: datetime) -> date:
    """The UTC day a moment belongs to (the day of its aggregates)."""
    return moment.astimezone(UTC).date()


class Month(Struct, frozen=True, order=True):
    """A calendar month (UTC); months order by time."""

    year: int
    month: int

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    @classmethod
    def parse(cls, text: str) -> Month:
        year, month = text.split("-")
        return cls(int(year), int(month))

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


class AggregateRow(Struct, frozen=True):
    """The sums of one group over one period: a day (``yyyy-mm-dd``) or a month (``yyyy-mm``).
    ``provider`` is set on ``model`` rows."""

    period: str
    value: str
    figures: UsageFigures
    provider: str | None = None


class RollupMark(Struct, frozen=True):
    """A month whose monthly aggregates are complete: written after all of them."""

    month: Month
    requests: int
    rows: int
    at: datetime


class UsageAggregates(Protocol):
    """Where aggregates live (``tollgate.aws.usage_store.DynamoUsageAggregates``). Writes come
    with each request's log entry; the scheduler writes the monthly rollups."""

    def daily(
        self, org_id: str, user: str | None, dimension: Dimension, start: date, end: date
    ) -> Sequence[AggregateRow]:
        """The day rows of one dimension from ``start`` to ``end`` (inclusive)."""
        ...

    def monthly(
        self, org_id: str, user: str | None, dimension: Dimension, first: Month, last: Month
    ) -> Sequence[AggregateRow]:
        """The month rows of one dimension from ``first`` to ``last`` (inclusive)."""
        ...

    def rollup_marks(self, org_id: str) -> Sequence[RollupMark]:
        """Every month of the org that is rolled up."""
        ...

    def put_monthly(
        self, org_id: str, user: str | None, dimension: Dimension, rows: Sequence[AggregateRow]
    ) -> None:
        """Write month rows (each replaces the row of its group and month: safe to repeat)."""
        ...

    def mark_rolled_up(self, org_id: str, mark: RollupMark) -> None:
        """Record that a month's rows are complete (safe to repeat)."""
        ...


__all__ = [
    "ORG_DIMENSIONS",
    "TOTAL_VALUE",
    "USER_DIMENSIONS",
    "AggregateKey",
    "AggregateRow",
    "Dimension",
    "Month",
    "RollupMark",
    "UsageAggregates",
    "aggregate_keys",
    "day_of",
]
