"""Generation request records (S6) and usage log entries (S9), and the ports that keep them.

A record is what ``GET /v1/requests/{id}`` shows: one per generation request, with its status
(pending -> processing -> completed | failed), what it cost and what it answered. Each is
written with its usage log entry (``tollgate.usage.log``); ``docs/generation.md`` has the table
layout. Money is integers: provider cost in micro-USD, credits in units of 1/10,000 credit.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from msgspec import Struct, field

from tollgate.staging import StagedWrites
from tollgate.usage.log import UsageLogEntry


class RequestStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class Rating(Struct, frozen=True):
    score: int
    comment: str | None
    rated_at: datetime
    rated_by: str


class GenerationRecord(Struct, frozen=True):
    """One generation request. ``prompt`` is kept unless the org keeps no prompts; then only
    ``prompt_hash`` is (always set). ``result`` is the answer as the cache stores it."""

    request_id: str
    org_id: str
    user: str
    key_id: str
    kind: str  # chat | completion | embedding
    requested_model: str
    model: str  # the model that answered (or was last tried), provider/name
    provider: str
    feature: str
    status: RequestStatus
    created_at: datetime
    prompt_hash: str
    prompt: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micro_usd: int = 0
    credits_charged: int = 0
    latency_ms: int = 0
    overhead_ms: int = 0
    cached: bool = False
    error: dict[str, Any] | None = None
    findings: tuple[dict[str, Any], ...] = ()
    fallbacks: tuple[dict[str, Any], ...] = ()
    template_id: str | None = None
    template_version: int | None = None
    parent_id: str | None = None
    rating: Rating | None = None
    completed_at: datetime | None = None


class RecordFilter(Struct, frozen=True):
    """What ``GET /v1/requests`` may narrow by. ``user`` is forced for members."""

    user: str | None = None
    status: RequestStatus | None = None
    model: str | None = None
    feature: str | None = None


class RecordPage(Struct, frozen=True):
    records: tuple[GenerationRecord, ...]
    next_cursor: str | None


class GenerationStore(Protocol):
    """Where records and usage log entries live (``tollgate.aws.generation_store``)."""

    def stage(self, record: GenerationRecord, log: UsageLogEntry | None = None) -> StagedWrites:
        """The writes of the record (create or replace) and its usage log entry, for the
        settlement's transaction."""
        ...

    def save(self, record: GenerationRecord, log: UsageLogEntry | None = None) -> None:
        """Write the record and, when given, its usage log entry, together, now."""
        ...

    def get(self, org_id: str, request_id: str) -> GenerationRecord | None: ...

    def list(self, org_id: str, filters: RecordFilter, limit: int, cursor: str | None) -> RecordPage:
        """The org's records, newest first."""
        ...

    def rate(self, org_id: str, request_id: str, rating: Rating) -> GenerationRecord | None:
        """Set the rating of an existing record; ``None`` when there is no such record."""
        ...


class ResponseCache(Protocol):
    """The exact response cache (S12), addressed by kind, org and the request's digest."""

    def get(self, kind: str, org_id: str, digest: str, now: datetime) -> dict[str, Any] | None:
        """The stored answer, or ``None`` when absent or past its TTL."""
        ...

    def put(
        self, kind: str, org_id: str, digest: str, answer: dict[str, Any], ttl_seconds: int, now: datetime
    ) -> None: ...
