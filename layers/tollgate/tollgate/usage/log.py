"""The usage log (S9): one entry for every request, cached or not, failed or not.

An entry is the line analytics read: who, which model and feature, tokens, provider cost,
credits, latency, cache hit, status and error class. Entries expire after the retention period
(``USAGE_LOG_RETENTION_DAYS``); the table layout is in ``docs/generation.md``. Money is
integers: provider cost in micro-USD, credits in units of 1/10,000 credit.

Entries are written with what they describe: a generation's entry is staged with its record
and committed in the same transaction as its settlement (``tollgate.staging``). Recording an
entry also adds it to its day's aggregates (``tollgate.usage.aggregates``), which analytics
read; the log itself is only browsed, a page at a time (``UsageLogPages``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from msgspec import Struct

from tollgate.staging import StagedWrites


class UsageStatus(StrEnum):
    """How a request ended (the values of ``RequestStatus`` that a log entry can have)."""

    COMPLETED = "completed"
    FAILED = "failed"


class UsageLogEntry(Struct, frozen=True):
    """One line of the usage log: every request leaves exactly one."""

    request_id: str
    org_id: str
    user: str
    key_id: str
    model: str
    provider: str
    feature: str
    kind: str
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int
    credits: int
    latency_ms: int
    cache_hit: bool
    status: UsageStatus
    error_class: str | None
    at: datetime
    template_id: str | None = None
    template_version: int | None = None
    error_code: str | None = None
    """The failure's stable problem code (``rate_limited``, ``provider_error``...): how analytics
    tell a refusal from a provider error (``tollgate.usage.figures.outcome_of``)."""


class UsageLog(Protocol):
    """Where usage log entries live (``tollgate.aws.usage_store``)."""

    def stage(self, entry: UsageLogEntry) -> StagedWrites:
        """The writes that record ``entry`` and add it to its day's aggregates, for another
        store's transaction (one that happens once: a settlement or a release)."""
        ...

    def write(self, entry: UsageLogEntry) -> None:
        """Record ``entry`` on its own (when there is no transaction to join); recording the
        same entry twice adds it once."""
        ...

    def day(self, org_id: str, day: str) -> Sequence[UsageLogEntry]:
        """The entries of one UTC day (``yyyy-mm-dd``), oldest first."""
        ...


class LogFilter(Struct, frozen=True):
    """What a page of the log is narrowed to (every given field must match)."""

    user: str | None = None
    model: str | None = None
    feature: str | None = None
    status: UsageStatus | None = None
    cache_hit: bool | None = None


class PositionedEntry(Struct, frozen=True):
    """A log entry and its position in its day (opaque; the store reads from after it)."""

    position: str
    entry: UsageLogEntry


class LogDayPage(Struct, frozen=True):
    """Entries of one day, newest first."""

    entries: tuple[PositionedEntry, ...]
    more: str | None  # the position to go on from within the day, None when the day is done


class UsageLogPages(Protocol):
    """The usage log read newest first, one day at a time (``DynamoUsageLog.page``)."""

    def page(
        self, org_id: str, day: date, filters: LogFilter, after: str | None, limit: int
    ) -> LogDayPage: ...


__all__ = [
    "LogDayPage",
    "LogFilter",
    "PositionedEntry",
    "UsageLog",
    "UsageLogEntry",
    "UsageLogPages",
    "UsageStatus",
]
