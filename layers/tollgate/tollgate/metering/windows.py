"""Quota windows: UTC calendar hours, days and months (a month may start on a billing anchor day).

A window is derived from the time alone, so a counter keyed by its window rolls over on time
without any scheduled job: the next request simply counts into the next window's item.
"""

from __future__ import annotations

import calendar
import math
from datetime import UTC, datetime, timedelta

from msgspec import Struct

from tollgate.plans import Window


def _anchored(year: int, month: int, anchor_day: int) -> datetime:
    """Midnight UTC of the anchor day in that month, clamped to the month's last day (31 -> 28 Feb)."""
    last = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(anchor_day, last), tzinfo=UTC)


def _shift_month(year: int, month: int, by: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + by
    return index // 12, index % 12 + 1


class QuotaWindow(Struct, frozen=True):
    """One window instance: [start, end)."""

    window: Window
    start: datetime
    end: datetime

    @classmethod
    def containing(cls, window: Window, at: datetime, anchor_day: int = 1) -> QuotaWindow:
        """The window of this kind that contains ``at`` (UTC). ``anchor_day`` applies to months."""
        at = at.astimezone(UTC)
        if window == "hour":
            start = at.replace(minute=0, second=0, microsecond=0)
            return cls(window, start, start + timedelta(hours=1))
        if window == "day":
            start = at.replace(hour=0, minute=0, second=0, microsecond=0)
            return cls(window, start, start + timedelta(days=1))
        start, end = billing_cycle(at, anchor_day)
        return cls(window, start, end)

    @property
    def key(self) -> str:
        """A stable, sortable name of this window instance, e.g. ``h2025011513``, ``m20250115``."""
        if self.window == "hour":
            return "h" + self.start.strftime("%Y%m%d%H")
        if self.window == "day":
            return "d" + self.start.strftime("%Y%m%d")
        return "m" + self.start.strftime("%Y%m%d")

    def seconds_until_end(self, at: datetime) -> int:
        """Whole seconds until the window ends, rounded up, at least 1 (for ``Retry-After``)."""
        return max(1, math.ceil((self.end - at).total_seconds()))


def billing_cycle(at: datetime, anchor_day: int = 1) -> tuple[datetime, datetime]:
    """The monthly cycle containing ``at``: from the anchor day (00:00 UTC) to the next one.

    An anchor past the end of a short month falls on that month's last day; the cycle after it
    returns to the anchor day (anchor 31: Jan 31, Feb 28, Mar 31, ...).
    """
    if not 1 <= anchor_day <= 31:
        raise ValueError("anchor_day must be between 1 and 31")
    at = at.astimezone(UTC)
    this_month = _anchored(at.year, at.month, anchor_day)
    if at >= this_month:
        year, month = _shift_month(at.year, at.month, 1)
        return this_month, _anchored(year, month, anchor_day)
    year, month = _shift_month(at.year, at.month, -1)
    return _anchored(year, month, anchor_day), this_month


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` later, clamped to the target month's last day."""
    year, month = _shift_month(moment.year, moment.month, months)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
