"""Image jobs, batches and assets (S7), and the ports that keep them.

A job is one ``POST /v1/images`` (or one item of a batch, or one synchronous
``/v1/images/generations``): what to draw, who asked, its status and, once completed, its
assets. Statuses move only forward, each move a conditional write on the current status:

    pending ──claim──▶ processing ──▶ completed
       ▲                   │    └────▶ failed
       └── retry later ────┘   (a transient failure; the SQS message comes back)

``processing`` carries a lease: a worker that died mid-job leaves a lease that expires, and a
later delivery of the message takes the job over. A job's reservation id is its id (a batch's
jobs are the parts of the batch's reservation). Assets live in S3 at keys fixed by the job id
(``asset_key``), so a job delivered twice writes the same objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from msgspec import Struct, field

from tollgate.staging import StagedWrites

if TYPE_CHECKING:  # annotations only (the templates and pricing modules load with their services)
    from tollgate.providers.base import ImageFormat
    from tollgate.templates.models import TemplateUse
    from tollgate.usage.log import UsageLogEntry

CONTENT_TYPES: Mapping[ImageFormat, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS: Mapping[ImageFormat, str] = {"png": "png", "jpeg": "jpg", "webp": "webp"}


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


def asset_prefix(org_id: str, job_id: str) -> str:
    """Where a job's images live: one folder per job, in its org's folder."""
    return f"assets/{org_id}/{job_id}/"


def asset_key(org_id: str, job_id: str, index: int, image_format: ImageFormat) -> str:
    """The S3 key of a job's ``index``-th image: fixed by the job id, so writing it twice
    writes one object."""
    return f"{asset_prefix(org_id, job_id)}{index}.{EXTENSIONS[image_format]}"


class ImageSpec(Struct, frozen=True):
    """What to draw, as the provider will be asked (the prompt after content security).
    ``metadata`` steers the mock provider (``metadata.mock``) and never reaches a real one."""

    prompt: str | None  # None once done when the org keeps no prompts (``prompt_hash`` stays)
    model: str  # the model or alias asked for
    size: str
    quality: str | None = None
    style: str | None = None
    n: int = 1
    negative_prompt: str | None = None
    seed: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


class Asset(Struct, frozen=True):
    """One stored image."""

    key: str
    format: ImageFormat
    width: int
    height: int
    bytes: int
    revised_prompt: str | None = None
    seed: int | None = None


class ImageJob(Struct, frozen=True):
    """One image job. Money is integers: provider cost in micro-USD, credits in 1/10,000."""

    job_id: str
    org_id: str
    user: str
    key_id: str
    status: JobStatus
    spec: ImageSpec
    feature: str
    model: str  # the model that answered (or the first of the chain, until then)
    provider: str
    prompt_hash: str
    created_at: datetime
    updated_at: datetime
    context_hash: str | None = None
    context: Mapping[str, Any] | None = None
    entity: Mapping[str, str] | None = None
    batch_id: str | None = None
    keep_prompt: bool = True
    cache_ttl_seconds: int | None = None  # how long its assets serve identical requests; None: not at all
    estimated_credits: int = 0
    attempts: int = 0
    lease_until: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    assets: tuple[Asset, ...] = ()
    cached: bool = False
    source_job_id: str | None = None  # a deduplicated job: the job whose assets it reuses
    usage_count: int = 0  # how many later jobs reused this job's assets
    cost_micro_usd: int = 0
    credits_charged: int = 0
    error: Mapping[str, Any] | None = None
    fallbacks: tuple[Mapping[str, Any], ...] = ()
    findings: tuple[Mapping[str, Any], ...] = ()
    synchronous: bool = False  # made by POST /v1/images/generations
    template: TemplateUse | None = None  # made from an image template: which version (S8)

    @property
    def template_id(self) -> str | None:
        return self.template.template_id if self.template else None

    @property
    def template_version(self) -> int | None:
        return self.template.version if self.template else None

    @property
    def reservation(self) -> tuple[str, str | None]:
        """(reservation id, part id): a batch's job is a part of the batch's reservation."""
        return (self.batch_id, self.job_id) if self.batch_id else (self.job_id, None)

    @property
    def latency_ms(self) -> int:
        start = self.started_at or self.created_at
        end = self.completed_at or self.updated_at
        return max(0, round((end - start).total_seconds() * 1000))


class ImageBatch(Struct, frozen=True):
    """A batch of jobs accepted whole (``POST /v1/images/batch``); its progress is its jobs'."""

    batch_id: str
    org_id: str
    user: str
    job_ids: tuple[str, ...]
    created_at: datetime
    estimated_credits: int


class BatchProgress(Struct, frozen=True):
    """How far a batch is: counts by status and a status of its own."""

    total: int
    pending: int
    processing: int
    completed: int
    failed: int

    @classmethod
    def of(cls, jobs: Sequence[ImageJob]) -> BatchProgress:
        def count(status: JobStatus) -> int:
            return sum(1 for job in jobs if job.status is status)

        return cls(
            len(jobs),
            count(JobStatus.PENDING),
            count(JobStatus.PROCESSING),
            count(JobStatus.COMPLETED),
            count(JobStatus.FAILED),
        )

    @property
    def done(self) -> int:
        return self.completed + self.failed

    @property
    def percent(self) -> int:
        """Jobs done, in whole percent (rounded down: 100 only when every job is done)."""
        return self.done * 100 // self.total if self.total else 100

    @property
    def status(self) -> JobStatus:
        """``pending`` until a job starts, ``processing`` until every job is done, then
        ``completed`` if any job completed, else ``failed``."""
        if self.done == self.total:
            return JobStatus.COMPLETED if self.completed else JobStatus.FAILED
        if self.pending == self.total:
            return JobStatus.PENDING
        return JobStatus.PROCESSING


class DedupHit(Struct, frozen=True):
    """An org's earlier job whose assets answer an identical request."""

    job_id: str
    model: str
    provider: str
    assets: tuple[Asset, ...]
    revised_prompt: str | None = None


class Claim(Struct, frozen=True):
    """The outcome of claiming a job: ``job`` as it is now; ``claimed`` when this worker holds it."""

    job: ImageJob | None
    claimed: bool


class JobMessage(Struct, frozen=True):
    """What goes on the queue for a job: just enough to find it (the job item has the rest)."""

    org_id: str
    job_id: str


MESSAGE_VERSION = 1


def message_body(message: JobMessage) -> str:
    """The queue message of a job: ``{"v", "org_id", "job_id"}`` as JSON."""
    return json.dumps({"v": MESSAGE_VERSION, "org_id": message.org_id, "job_id": message.job_id})


def message_of(body: str) -> JobMessage | None:
    """The job a queue message names; ``None`` for a body that is not one of ours."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    org_id, job_id = data.get("org_id"), data.get("job_id")
    if not isinstance(org_id, str) or not isinstance(job_id, str) or not org_id or not job_id:
        return None
    return JobMessage(org_id=org_id, job_id=job_id)


class StoredObject(Struct, frozen=True):
    """An object of the asset store, as ``AssetStore.objects`` lists it."""

    key: str
    bytes: int
    metadata: Mapping[str, str]


class ImageJobStore(Protocol):
    """Jobs, batches and the dedup index (``tollgate.aws.image_store``). The ``stage_*``
    methods prepare writes for the transaction of the money move that goes with them, the
    job's usage log entry among them."""

    def create(self, jobs: Sequence[ImageJob], batch: ImageBatch | None = None) -> None:
        """Write new jobs (and then their batch), each only if absent."""
        ...

    def get(self, org_id: str, job_id: str) -> ImageJob | None: ...

    def get_many(self, org_id: str, job_ids: Sequence[str]) -> list[ImageJob]:
        """The jobs found, in the order asked."""
        ...

    def batch(self, org_id: str, batch_id: str) -> ImageBatch | None: ...

    def claim(self, org_id: str, job_id: str, now: datetime, lease_until: datetime) -> Claim:
        """pending -> processing (or a processing job whose lease expired), with a new lease."""
        ...

    def retry_later(self, job: ImageJob, error: Mapping[str, Any], now: datetime) -> None:
        """processing -> pending after a transient failure, giving up this worker's lease (a
        job another worker took over meanwhile is left alone)."""
        ...

    def stage_finish(
        self, job: ImageJob, log: UsageLogEntry, index: AssetIndex | None = None
    ) -> StagedWrites:
        """A job that is not final yet becomes ``job`` (completed or failed), with its usage log
        entry and, for completed jobs, its dedup index entries. The job's move is conditional:
        if the job is final already, the whole transaction is refused."""
        ...

    def stage_new(
        self,
        job: ImageJob,
        log: UsageLogEntry,
        index: AssetIndex | None = None,
        reused: str | None = None,
    ) -> StagedWrites:
        """A job born final (deduplicated, or synchronous), written only if absent, with its
        usage log entry, its index entries, and one more use of the ``reused`` job's assets."""
        ...

    def fail(self, job: ImageJob, log: UsageLogEntry) -> bool:
        """Move a job that is not final yet to ``job`` (failed) with its usage log entry,
        outside any money move (its reservation is already released). ``False`` if it was final."""
        ...

    def find(self, org_id: str, digest: str, now: datetime) -> DedupHit | None:
        """The org's assets indexed under ``digest``, unless that entry expired."""
        ...


class AssetIndex(Struct, frozen=True):
    """Where a completed job's assets are found again: its hashes, until ``expires_at``."""

    hashes: tuple[str, ...]
    expires_at: datetime


class AssetStore(Protocol):
    """Image bytes in S3 (``tollgate.aws.assets``)."""

    def put_new(self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str]) -> bool:
        """Write the object unless one exists at ``key``; ``False`` when one did."""
        ...

    def objects(self, prefix: str) -> list[StoredObject]:
        """The objects under ``prefix``, with their metadata."""
        ...

    def read(self, key: str, max_bytes: int) -> bytes | None:
        """The object's bytes (``None`` if absent); ``PayloadTooLarge`` past ``max_bytes``."""
        ...

    def url(self, key: str, ttl_seconds: int) -> str:
        """A presigned GET URL, valid ``ttl_seconds``."""
        ...

    def key_of_url(self, url: str) -> str | None:
        """The key of one of this store's objects named by ``url``, else ``None``."""
        ...


class JobQueue(Protocol):
    """The image jobs queue (``tollgate.aws.job_queue``)."""

    def send(self, messages: Sequence[JobMessage]) -> list[JobMessage]:
        """Send every message; returns those that could not be sent."""
        ...
