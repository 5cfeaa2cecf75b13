"""The money moves of image jobs (S4, S7, S9): each one carries, in its own DynamoDB
transaction, the job's status move and the job's usage log entry (and, for a completed job,
its dedup index entries). So a job is completed exactly when it is charged, failed exactly
when its credits went back, and it leaves exactly one usage log entry.

A job made from a template (S8) counts one use of its template version when it completes (a
deduplicated one too; a failed one never): an org's own template in the same transaction,
a public one right after it (``TemplateUses``, that is ``TemplateService``).

A job's reservation is its own (reservation id = job id), or a part of its batch's
reservation; ``JobBilling`` picks ``settle``/``release`` or ``settle_part``/``release_part``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from msgspec.structs import replace

from tollgate.errors import NotFound, TollgateError
from tollgate.identity.models import Caller
from tollgate.images.generator import Generated, fallbacks_of
from tollgate.images.jobs import AssetIndex, DedupHit, ImageJob, ImageJobStore, ImageSpec, JobStatus
from tollgate.images.planning import actual_usage
from tollgate.metering.models import Release, Reservation, ReservationStatus, Settlement, Usage
from tollgate.metering.pricing import FeatureRule, Pricing
from tollgate.providers.errors import UpstreamError
from tollgate.staging import StagedWrites
from tollgate.usage.log import UsageLogEntry, UsageStatus

if TYPE_CHECKING:  # only a job made from a template has one (the templates load with their service)
    from tollgate.templates.models import TemplateUse

KIND = "image"


class ImageMetering(Protocol):
    """The part of ``MeteringService`` images use."""

    @property
    def pricing(self) -> Pricing: ...

    def reserve(
        self, caller: Caller, feature: str | FeatureRule, estimate: Usage, reservation_id: str
    ) -> Reservation: ...

    def reserve_batch(
        self,
        caller: Caller,
        feature: str | FeatureRule,
        parts: Sequence[tuple[str, Usage]],
        reservation_id: str,
    ) -> Reservation: ...

    def settle(
        self,
        org_id: str,
        reservation_id: str,
        actual: Usage,
        attach: Callable[[Settlement], StagedWrites | None] | None = None,
    ) -> Settlement: ...

    def settle_part(
        self,
        org_id: str,
        reservation_id: str,
        part_id: str,
        actual: Usage,
        attach: Callable[[Settlement], StagedWrites | None] | None = None,
    ) -> Settlement: ...

    def release(
        self,
        org_id: str,
        reservation_id: str,
        attach: Callable[[Release], StagedWrites | None] | None = None,
    ) -> Release: ...

    def release_part(
        self,
        org_id: str,
        reservation_id: str,
        part_id: str,
        attach: Callable[[Release], StagedWrites | None] | None = None,
    ) -> Release: ...

    def charge(
        self,
        caller: Caller,
        feature: str | FeatureRule,
        usage: Usage,
        reservation_id: str,
        attach: Callable[[Settlement], StagedWrites | None] | None = None,
    ) -> Settlement: ...

    def reservation(self, org_id: str, reservation_id: str) -> Reservation: ...


class TemplateUses(Protocol):
    """How a template's use is counted (``tollgate.templates.service.TemplateService``)."""

    def stage_use(self, use: TemplateUse) -> StagedWrites | None:
        """Writes counting the use in the money move's transaction; ``None``: count it after."""
        ...

    def count_use(self, use: TemplateUse) -> None:
        """Count the use after the money move, unless ``stage_use`` staged it."""
        ...


def error_of(exc: BaseException) -> dict[str, Any]:
    """What a job records of the failure that ended it (no prompt text: the class, the code,
    the provider's status)."""
    error: dict[str, Any] = {"class": type(exc).__name__}
    if isinstance(exc, TollgateError):
        error.update(code=exc.code, status=exc.status, detail=exc.detail)
        if isinstance(exc, UpstreamError):
            error["provider"] = exc.provider
            if exc.upstream_status is not None:
                error["provider_status"] = exc.upstream_status
    else:
        error.update(code="internal_error", detail="The job failed inside Tollgate")
    return error


def log_entry(job: ImageJob) -> UsageLogEntry:
    """The job's one usage log entry (S9)."""
    return UsageLogEntry(
        request_id=job.job_id,
        org_id=job.org_id,
        user=job.user,
        key_id=job.key_id,
        model=job.model,
        provider=job.provider,
        feature=job.feature,
        kind=KIND,
        input_tokens=0,
        output_tokens=0,
        cost_micro_usd=job.cost_micro_usd,
        credits=job.credits_charged,
        latency_ms=job.latency_ms,
        cache_hit=job.cached,
        status=UsageStatus.COMPLETED if job.status is JobStatus.COMPLETED else UsageStatus.FAILED,
        error_class=str(job.error["class"]) if job.error else None,
        at=job.completed_at or job.updated_at,
        template_id=job.template_id,
        template_version=job.template_version,
    )


def _done_spec(job: ImageJob) -> ImageSpec:
    # An org that keeps no prompts keeps a job's prompt only while the job needs it.
    return job.spec if job.keep_prompt else replace(job.spec, prompt=None)


def _provider_of(model: str) -> str:
    return model.partition("/")[0]


class JobBilling:
    """Completes and fails jobs with their money moves."""

    def __init__(
        self, metering: ImageMetering, jobs: ImageJobStore, templates: TemplateUses | None = None
    ) -> None:
        self._metering = metering
        self._jobs = jobs
        self._templates = templates

    # -- a template's use --------------------------------------------------------------------

    def _with_use(self, job: ImageJob, staged: StagedWrites) -> StagedWrites:
        """``staged`` and, for a completed job made from an org's own template, its use."""
        if job.template is None or self._templates is None or job.status is not JobStatus.COMPLETED:
            return staged
        use = self._templates.stage_use(job.template)
        return staged if use is None else staged.plus(use)

    def _counted(self, job: ImageJob) -> ImageJob:
        """After the money move of a completed job: count a public template's use."""
        if job.template is not None and self._templates is not None and job.status is JobStatus.COMPLETED:
            self._templates.count_use(job.template)
        return job

    # -- the reservation of a job ------------------------------------------------------------

    def reservation_open(self, job: ImageJob) -> bool:
        """Whether the job's credits are still held (the stale-hold sweep releases holds of
        jobs that waited too long; such a job must not call a provider any more)."""
        reservation_id, part_id = job.reservation
        try:
            found = self._metering.reservation(job.org_id, reservation_id)
        except NotFound:
            return False
        if part_id is None:
            return found.status is ReservationStatus.HELD
        part = found.part(part_id)
        return part is not None and part.is_open

    # -- jobs that ran -----------------------------------------------------------------------

    def complete(self, job: ImageJob, generated: Generated, now: datetime) -> ImageJob:
        """Settle the job's actual usage; the job becomes completed in the same transaction.
        Settling twice charges once. ``Conflict`` if its credits went back meanwhile (the
        stale-hold sweep); ``StagedWriteRefused`` if the job was made final by another worker."""
        done = replace(
            job,
            status=JobStatus.COMPLETED,
            spec=_done_spec(job),
            model=generated.model,
            provider=_provider_of(generated.model),
            assets=generated.assets,
            fallbacks=fallbacks_of(generated.fallbacks) or job.fallbacks,
            error=None,
            lease_until=None,
            updated_at=now,
            completed_at=now,
        )
        usage = actual_usage(generated.model, job.spec, len(generated.assets))
        index = self.index_of(done, now)

        def attach(settlement: Settlement) -> StagedWrites:
            charged = _charged(done, settlement)
            return self._with_use(charged, self._jobs.stage_finish(charged, log_entry(charged), index))

        reservation_id, part_id = job.reservation
        if part_id is None:
            settlement = self._metering.settle(job.org_id, reservation_id, usage, attach=attach)
        else:
            settlement = self._metering.settle_part(job.org_id, reservation_id, part_id, usage, attach=attach)
        return self._counted(_charged(done, settlement))

    def fail(self, job: ImageJob, error: Mapping[str, Any], now: datetime) -> ImageJob:
        """Release the job's credits; the job becomes failed in the same transaction. When its
        credits went back already (the sweep), the job is failed on its own."""
        failed = replace(
            job,
            status=JobStatus.FAILED,
            spec=_done_spec(job),
            error=dict(error),
            lease_until=None,
            cost_micro_usd=0,
            credits_charged=0,
            updated_at=now,
            completed_at=now,
        )
        moved: list[bool] = []

        def attach(released: Release) -> StagedWrites:
            moved.append(True)
            return self._jobs.stage_finish(failed, log_entry(failed))

        reservation_id, part_id = job.reservation
        if part_id is None:
            self._metering.release(job.org_id, reservation_id, attach=attach)
        else:
            self._metering.release_part(job.org_id, reservation_id, part_id, attach=attach)
        if not moved:  # released before, without this job's move (the sweep): fail it now
            self._jobs.fail(failed, log_entry(failed))
        return failed

    def expire(self, job: ImageJob, now: datetime) -> ImageJob:
        """A job whose credits went back before it ran (it waited past the stale-hold limit)."""
        failed = replace(
            job,
            status=JobStatus.FAILED,
            spec=_done_spec(job),
            error={
                "class": "ReservationExpired",
                "code": "reservation_expired",
                "detail": "The job waited too long: its credits were released before it ran",
            },
            lease_until=None,
            updated_at=now,
            completed_at=now,
        )
        self._jobs.fail(failed, log_entry(failed))
        return failed

    # -- jobs born final: synchronous generations and deduplicated requests ------------------

    def complete_new(self, job: ImageJob, generated: Generated, now: datetime) -> ImageJob:
        """Settle a synchronous job (reserved under its id); it is written completed with it."""
        done = replace(
            job,
            status=JobStatus.COMPLETED,
            spec=_done_spec(job),
            model=generated.model,
            provider=_provider_of(generated.model),
            assets=generated.assets,
            fallbacks=fallbacks_of(generated.fallbacks),
            updated_at=now,
            completed_at=now,
        )
        usage = actual_usage(generated.model, job.spec, len(generated.assets))
        index = self.index_of(done, now)
        settlement = self._metering.settle(
            job.org_id,
            job.job_id,
            usage,
            attach=lambda settled: self._with_use(
                done, self._jobs.stage_new(_charged(done, settled), log_entry(_charged(done, settled)), index)
            ),
        )
        return self._counted(_charged(done, settlement))

    def fail_new(self, job: ImageJob, error: Mapping[str, Any], now: datetime) -> ImageJob:
        """Release a synchronous job that failed; it is written failed with the release."""
        failed = replace(
            job,
            status=JobStatus.FAILED,
            spec=_done_spec(job),
            error=dict(error),
            updated_at=now,
            completed_at=now,
        )
        self._metering.release(
            job.org_id, job.job_id, attach=lambda _released: self._jobs.stage_new(failed, log_entry(failed))
        )
        return failed

    def reuse(
        self,
        caller: Caller,
        job: ImageJob,
        hit: DedupHit,
        now: datetime,
        charged_as: str | FeatureRule | None = None,
    ) -> ImageJob:
        """Answer a job with an earlier job's assets: charged as a cache hit (free by default,
        still counted in the rate limits) by ``charged_as`` (a template's declared rule; else
        the job's feature), written completed, the earlier job's usage count +1, all in one
        transaction. Refusals (429) as ``reserve``'s."""
        reused = self._reused(job, hit, now)
        settlement = self._metering.charge(
            caller,
            charged_as or job.feature,
            self.hit_usage(hit),
            job.job_id,
            attach=lambda settled: self._stage_reused(_charged(reused, settled), hit),
        )
        return self._counted(_charged(reused, settlement))

    def reuse_part(self, job: ImageJob, hit: DedupHit, now: datetime) -> ImageJob:
        """The same for a job of a batch, whose part was reserved at the cache-hit price."""
        assert job.batch_id is not None
        reused = self._reused(job, hit, now)
        settlement = self._metering.settle_part(
            job.org_id,
            job.batch_id,
            job.job_id,
            self.hit_usage(hit),
            attach=lambda settled: self._stage_reused(_charged(reused, settled), hit),
        )
        return self._counted(_charged(reused, settlement))

    @staticmethod
    def hit_usage(hit: DedupHit) -> Usage:
        provider, _, model = hit.model.partition("/")
        return Usage(provider=provider, model=model, images=len(hit.assets), cache_hit=True)

    def _reused(self, job: ImageJob, hit: DedupHit, now: datetime) -> ImageJob:
        return replace(
            job,
            status=JobStatus.COMPLETED,
            spec=_done_spec(job),
            model=hit.model,
            provider=hit.provider,
            assets=hit.assets,
            cached=True,
            source_job_id=hit.job_id,
            updated_at=now,
            started_at=now,
            completed_at=now,
        )

    def _stage_reused(self, job: ImageJob, hit: DedupHit) -> StagedWrites:
        return self._with_use(job, self._jobs.stage_new(job, log_entry(job), reused=hit.job_id))

    @staticmethod
    def index_of(job: ImageJob, now: datetime) -> AssetIndex | None:
        """Where the job's assets are found again, unless its request skipped the cache."""
        if job.cache_ttl_seconds is None:
            return None
        hashes = (job.prompt_hash, job.context_hash) if job.context_hash else (job.prompt_hash,)
        return AssetIndex(hashes, now + timedelta(seconds=job.cache_ttl_seconds))


def _charged(job: ImageJob, settlement: Settlement) -> ImageJob:
    return replace(
        job, cost_micro_usd=settlement.actual.cost_micro_usd, credits_charged=settlement.charged_credits
    )


__all__ = ["ImageMetering", "JobBilling", "TemplateUses", "error_of", "log_entry"]
