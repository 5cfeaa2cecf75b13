"""The image API's domain (S7): jobs, batches, synchronous generations and colour analysis.

``POST /v1/images`` (``submit``), for every job, in this order:

1. a template (``template_id``, S8) is rendered into the prompt, its parameters under the
   request's own, its declared price or feature kept for the charge; then content security on
   the prompt (the org's policy), then the plan: the chain of models that can make this size
   and quality, the estimate (the dearest of them), the hashes;
2. deduplication: an asset of the org with the same prompt hash or context hash answers at
   once, charged as a cache hit (free by default, still counted in the rate limits), the
   job written completed and the earlier job's usage count + 1, in one transaction;
3. ``reserve`` the estimate under the job's id: limits and credits are checked here (``402``
   or ``429``, and no job);
4. the job item (pending), then its message on the queue; if the queue refuses it, the
   reservation is released with the job failed (nothing charged) and the answer is ``503``.

The worker (``tollgate.images.worker``) does the rest. A batch does the same for every item
with one reservation for all of them (``MeteringService.reserve_batch``): checked whole,
accepted whole or refused whole.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from msgspec import Struct
from msgspec.structs import replace
from pydantic import ValidationError

from tollgate.api.params import field_errors
from tollgate.clock import Clock, SystemClock
from tollgate.errors import (
    Conflict,
    ContentBlocked,
    FieldError,
    NotFound,
    ServiceUnavailable,
    TollgateError,
    UnsupportedMediaType,
    ValidationFailed,
)
from tollgate.generation.cache_key import CacheOptions
from tollgate.generation.context import RequestContext
from tollgate.generation.registry import ModelRegistry
from tollgate.generation.requests import ImageGenerationRequest
from tollgate.generation.security import ContentLimits, scan_texts
from tollgate.identity.models import Caller, Role
from tollgate.ids import is_valid_id, new_id
from tollgate.images.billing import ImageMetering, JobBilling, TemplateUses, error_of, log_entry
from tollgate.images.colors import InvalidImage, Palette, UnsupportedImage, decode_png, palette
from tollgate.images.generator import ImageGenerator
from tollgate.images.jobs import (
    AssetStore,
    BatchProgress,
    DedupHit,
    ImageBatch,
    ImageJob,
    ImageJobStore,
    JobMessage,
    JobQueue,
    JobStatus,
)
from tollgate.images.planning import ImagePlan, actual_usage, plan_image
from tollgate.images.requests import MAX_UPLOAD_BYTES, AnalyzeRequest, ImageBatchRequest, ImageJobRequest
from tollgate.metering.models import Usage
from tollgate.metering.ports import StagedWriteRefused
from tollgate.metering.pricing import UnknownPrice
from tollgate.metering.service import settled_despite_failure
from tollgate.providers.catalog import ProviderCatalog
from tollgate.templates.models import IMAGE_PARAMS, refuse_another_feature
from tollgate.usage.log import UsageLog, UsageLogEntry, UsageStatus

if TYPE_CHECKING:
    from tollgate.templates.service import ImageTemplateRequest

logger = Logger()

JOB_PREFIX = "img"
BATCH_PREFIX = "imgb"
ANALYSIS_FEATURE = "color_analysis"
ANALYSIS_MODEL = "tollgate/palette"
MAX_ANALYZED_BYTES = 16 * 1024 * 1024
_ASSET_KEY = re.compile(r"^assets/(?P<org>[^/]+)/(?P<job>[^/]+)/(?P<index>\d+)\.(png|jpg|webp)$")
_TEMPLATE_FIELDS = frozenset({"template_id", "variables", "template_version"})
_QUEUE_DOWN = {
    "class": "QueueUnavailable",
    "code": "service_unavailable",
    "detail": "The job could not be queued; nothing was charged",
}


class ImageTemplates(TemplateUses, Protocol):
    """What image jobs need of templates (``tollgate.templates.service.TemplateService``)."""

    def render_image(
        self,
        caller: Caller,
        template_id: str,
        variables: Mapping[str, Any] | None,
        *,
        version: int | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> ImageTemplateRequest:
        """The image template rendered: ``404`` if the caller may not read it, ``422`` for a
        text template and for variables at fault (each ``variables.<name>``)."""
        ...


class Submitted(Struct, frozen=True):
    """A job as ``POST /v1/images`` answers it; ``cache_hit`` when an earlier asset answered."""

    job: ImageJob
    cache_hit: bool


class BatchView(Struct, frozen=True):
    batch: ImageBatch
    jobs: tuple[ImageJob, ...]

    @property
    def progress(self) -> BatchProgress:
        return BatchProgress.of(self.jobs)


class SyncImages(Struct, frozen=True):
    """A synchronous generation: the job (completed) and, when asked, the images' bytes."""

    job: ImageJob
    data: tuple[bytes, ...]
    cache_hit: bool


class Analysis(Struct, frozen=True):
    palette: Palette
    source: Mapping[str, Any]
    credits_charged: int


class ImageService:
    """Image jobs, batches, synchronous generations and colour analysis, charged through
    metering and recorded."""

    def __init__(
        self,
        providers: ProviderCatalog,
        metering: ImageMetering,
        jobs: ImageJobStore,
        assets: AssetStore,
        queue: JobQueue,
        registry: ModelRegistry,
        usage_log: UsageLog,
        *,
        url_ttl_seconds: int = 3600,
        sync_max_images: int = 4,
        limits: ContentLimits | None = None,
        clock: Clock | None = None,
        templates: ImageTemplates | None = None,
    ) -> None:
        self._providers = providers
        self._metering = metering
        self._jobs = jobs
        self._assets = assets
        self._queue = queue
        self._registry = registry
        self._usage_log = usage_log
        self._url_ttl = url_ttl_seconds
        self._sync_max = sync_max_images
        self._limits = limits or ContentLimits()
        self._clock = clock or SystemClock()
        self._templates = templates
        self._billing = JobBilling(metering, jobs, templates)
        self._generator = ImageGenerator(providers, assets)

    @property
    def url_ttl_seconds(self) -> int:
        return self._url_ttl

    # -- POST /v1/images ---------------------------------------------------------------------

    def submit(self, ctx: RequestContext, body: ImageJobRequest) -> Submitted:
        """Accept one job: reused at once, or reserved and queued (see the module docstring)."""
        try:
            plan = self._plan(ctx, body)
        except ContentBlocked as exc:
            self._log_unplanned(ctx, ctx.request_id, body.model, body.feature, "image", exc)
            raise
        now = self._clock.now()
        job = self._new_job(ctx, plan, now)
        hit = self._find(job.org_id, plan, now)
        if hit is not None:
            try:
                return Submitted(self._billing.reuse(ctx.caller, job, hit, now, plan.charged_as), True)
            except StagedWriteRefused:
                logger.warning(
                    "an indexed asset's job is gone; generating anew", extra={"job_id": hit.job_id}
                )
            except TollgateError as exc:
                self._log_refused(job, exc)
                raise
        try:
            reservation = self._metering.reserve(ctx.caller, plan.charged_as, plan.estimate, job.job_id)
        except TollgateError as exc:
            self._log_refused(job, exc)
            raise
        job = replace(job, estimated_credits=reservation.held_credits)
        try:
            self._jobs.create([job])
        except Exception as exc:
            self._release_unstored(job, exc)
            raise
        if self._queue.send([JobMessage(job.org_id, job.job_id)]):
            self._billing.fail(job, _QUEUE_DOWN, self._clock.now())
            raise ServiceUnavailable(
                "The image queue is unavailable; nothing was charged. Retry shortly",
                headers={"Retry-After": "5"},
            )
        return Submitted(job, False)

    # -- POST /v1/images/batch ---------------------------------------------------------------

    def submit_batch(self, ctx: RequestContext, body: ImageBatchRequest) -> BatchView:
        """Accept a batch whole or refuse it whole: every item is checked first (``422`` naming
        ``items.<n>.<field>``), then one reservation holds and counts all of them."""
        plans: list[ImagePlan] = []
        errors: list[FieldError] = []
        for index, item in enumerate(body.items):
            try:
                plans.append(self._plan(ctx, item, prefix=f"items.{index}."))
            except ValidationFailed as exc:
                errors.extend(exc.errors)
            except NotFound as exc:
                raise NotFound(f"items.{index}: {exc.detail}") from None
            except ContentBlocked as exc:
                self._log_unplanned(ctx, ctx.request_id, item.model, item.feature, "image_batch", exc)
                raise ContentBlocked(f"items.{index}: {exc.detail}", extra=exc.extra) from None
        if errors:
            raise ValidationFailed(errors)
        feature, charged_as = plans[0].feature, plans[0].charged_as
        mixed = [n for n, plan in enumerate(plans) if plan.charged_as != charged_as]
        if mixed:
            raise ValidationFailed(
                [
                    FieldError(f"items.{n}.feature", "a batch is billed as one feature", "mixed_features")
                    for n in mixed
                ]
            )
        now = self._clock.now()
        batch_id = new_id(BATCH_PREFIX)
        jobs = [self._new_job(ctx, plan, now, batch_id=batch_id) for plan in plans]
        hits = {
            job.job_id: hit
            for job, plan in zip(jobs, plans, strict=True)
            if (hit := self._find(job.org_id, plan, now))
        }
        parts = [
            (job.job_id, JobBilling.hit_usage(hits[job.job_id]) if job.job_id in hits else plan.estimate)
            for job, plan in zip(jobs, plans, strict=True)
        ]
        try:
            reservation = self._metering.reserve_batch(ctx.caller, charged_as, parts, batch_id)
        except TollgateError as exc:
            self._log_unplanned(ctx, batch_id, "batch", feature, "image_batch", exc)
            raise
        estimates = {part.part_id: part.estimate.credits for part in reservation.parts}
        jobs = [replace(job, estimated_credits=estimates[job.job_id]) for job in jobs]
        batch = ImageBatch(
            batch_id=batch_id,
            org_id=ctx.org_id,
            user=ctx.caller.user,
            job_ids=tuple(job.job_id for job in jobs),
            created_at=now,
            estimated_credits=reservation.held_credits,
        )
        queued = [job for job in jobs if job.job_id not in hits]
        try:
            self._jobs.create(queued, batch)
        except Exception as exc:
            self._release_batch(ctx, batch_id, feature, exc)
            raise
        finished: dict[str, ImageJob] = {}
        for job in jobs:
            if job.job_id in hits:
                finished[job.job_id] = self._reuse_in_batch(job, hits[job.job_id], now)
        unsent = {
            message.job_id for message in self._queue.send([JobMessage(j.org_id, j.job_id) for j in queued])
        }
        for job in queued:
            if job.job_id in unsent:
                finished[job.job_id] = self._billing.fail(job, _QUEUE_DOWN, self._clock.now())
        if queued and len(unsent) == len(queued) and not hits:
            raise ServiceUnavailable(
                "The image queue is unavailable; nothing was charged. Retry shortly",
                headers={"Retry-After": "5"},
            )
        return BatchView(batch, tuple(finished.get(job.job_id, job) for job in jobs))

    # -- reads -------------------------------------------------------------------------------

    def job(self, caller: Caller, job_id: str) -> ImageJob:
        """A job of the caller's org (a member's own only); anything else is ``404``."""
        job = (
            self._jobs.get(caller.org_id, job_id)
            if caller.org_id is not None and is_valid_id(job_id, JOB_PREFIX)
            else None
        )
        if job is None or (caller.role is Role.MEMBER and job.user != caller.user):
            raise NotFound(f"No image job {job_id[:100]!r}")
        return job

    def batch(self, caller: Caller, batch_id: str) -> BatchView:
        """A batch of the caller's org with its jobs (a member's own only)."""
        batch = (
            self._jobs.batch(caller.org_id, batch_id)
            if caller.org_id is not None and is_valid_id(batch_id, BATCH_PREFIX)
            else None
        )
        if batch is None or (caller.role is Role.MEMBER and batch.user != caller.user):
            raise NotFound(f"No image batch {batch_id[:100]!r}")
        return BatchView(batch, tuple(self._jobs.get_many(batch.org_id, batch.job_ids)))

    def urls(self, job: ImageJob) -> tuple[str, ...]:
        """Presigned URLs of the job's images (expiring after ``url_ttl_seconds``)."""
        return tuple(self._assets.url(asset.key, self._url_ttl) for asset in job.assets)

    # -- POST /v1/images/generations (synchronous) --------------------------------------------

    def generate_now(self, ctx: RequestContext, body: ImageGenerationRequest) -> SyncImages:
        """Make the images inline (small requests: ``n`` up to ``sync_max_images``), metered
        exactly as a job: dedup, reserve, provider, assets, settle or release, logged."""
        if body.n > self._sync_max:
            raise ValidationFailed(
                [FieldError("n", f"at most {self._sync_max} images inline; use POST /v1/images", "too_many")]
            )
        try:
            plan = self._plan_fields(
                ctx,
                prompt=body.prompt,
                model=body.model,
                size=body.size,
                quality=body.quality,
                style=body.style,
                n=body.n,
                cache=body.cache,
                feature=body.feature,
                metadata=body.metadata,
            )
        except ContentBlocked as exc:
            self._log_unplanned(ctx, ctx.request_id, body.model, body.feature, "image", exc)
            raise
        now = self._clock.now()
        job = replace(
            self._new_job(ctx, plan, now), status=JobStatus.PROCESSING, started_at=now, synchronous=True
        )
        want_bytes = body.response_format == "b64_json"
        hit = self._find(job.org_id, plan, now)
        if hit is not None:
            try:
                reused = self._billing.reuse(ctx.caller, job, hit, now)
            except TollgateError as exc:
                self._log_refused(job, exc)
                raise
            except StagedWriteRefused:
                reused = None
            if reused is not None:
                return SyncImages(reused, self._read_all(reused) if want_bytes else (), True)
        try:
            reservation = self._metering.reserve(ctx.caller, plan.feature, plan.estimate, job.job_id)
        except TollgateError as exc:
            self._log_refused(job, exc)
            raise
        job = replace(job, estimated_credits=reservation.held_credits)
        try:
            generated = self._generator.generate(job, plan.chain, lambda model: self.cost_of(job, model))
        except Exception as exc:
            try:
                self._billing.fail_new(job, error_of(exc), self._clock.now())
            except Exception:
                logger.exception("could not release a failed synchronous image request")
            raise
        try:
            done = self._billing.complete_new(job, generated, self._clock.now())
        except Exception as exc:
            recovered = self._completed_despite(job, exc)
            if recovered is None:
                raise
            done = recovered
        if not want_bytes:
            return SyncImages(done, (), False)
        return SyncImages(done, generated.data or self._read_all(done), False)

    def _completed_despite(self, job: ImageJob, exc: Exception) -> ImageJob | None:
        """The job of a synchronous request whose settlement failed, if it committed after all
        (the job was written completed with it); a reservation still held is released now, with
        the job failed."""

        def fail() -> None:
            try:
                self._billing.fail_new(job, error_of(exc), self._clock.now())
            except Exception:
                logger.exception("could not release a synchronous image request")

        if settled_despite_failure(self._metering, job.org_id, job.job_id, release_held=fail) is None:
            return None
        try:
            return self._jobs.get(job.org_id, job.job_id)
        except Exception:
            logger.exception("could not read back a synchronous job whose settlement committed")
            return None

    # -- POST /v1/images/analyze --------------------------------------------------------------

    def analyze(self, ctx: RequestContext, body: AnalyzeRequest) -> Analysis:
        """The palette of an owned asset or an uploaded PNG, charged as ``color_analysis``."""
        data, source, field = self._analysis_source(ctx, body)
        try:
            decoded = decode_png(data)
        except UnsupportedImage as exc:
            raise UnsupportedMediaType(str(exc).capitalize()) from None
        except InvalidImage as exc:
            raise ValidationFailed([FieldError(field, str(exc), "invalid_image")]) from None
        found = palette(decoded, body.colors)
        now = self._clock.now()
        entry = UsageLogEntry(
            request_id=ctx.request_id,
            org_id=ctx.org_id,
            user=ctx.caller.user,
            key_id=ctx.caller.key_id,
            model=ANALYSIS_MODEL,
            provider="tollgate",
            feature=ANALYSIS_FEATURE,
            kind=ANALYSIS_FEATURE,
            input_tokens=0,
            output_tokens=0,
            cost_micro_usd=0,
            credits=0,
            latency_ms=0,
            cache_hit=False,
            status=UsageStatus.COMPLETED,
            error_class=None,
            at=now,
        )
        try:
            settlement = self._metering.charge(
                ctx.caller,
                ANALYSIS_FEATURE,
                Usage(),
                ctx.request_id,
                attach=lambda settled: self._usage_log.stage(replace(entry, credits=settled.charged_credits)),
            )
        except TollgateError as exc:
            self._write_log(replace(entry, status=UsageStatus.FAILED, error_class=type(exc).__name__))
            raise
        return Analysis(found, source, settlement.charged_credits)

    def _analysis_source(
        self, ctx: RequestContext, body: AnalyzeRequest
    ) -> tuple[bytes, dict[str, Any], str]:
        if body.image is not None:
            try:
                data = base64.b64decode(body.image, validate=True)
            except (binascii.Error, ValueError):
                raise ValidationFailed([FieldError("image", "not valid base64", "invalid_base64")]) from None
            if len(data) > MAX_UPLOAD_BYTES:
                raise ValidationFailed(
                    [FieldError("image", f"at most {MAX_UPLOAD_BYTES} bytes", "too_large")]
                )
            return data, {"type": "upload", "bytes": len(data)}, "image"
        if body.job_id is not None:
            job = self.job(ctx.caller, body.job_id)
            if job.status is not JobStatus.COMPLETED:
                raise Conflict(
                    f"Image job {job.job_id} is {job.status.value}; only completed jobs have images"
                )
            if body.index >= len(job.assets):
                raise ValidationFailed(
                    [FieldError("index", f"the job has {len(job.assets)} images", "out_of_range")]
                )
            key, source, field = (
                job.assets[body.index].key,
                {"type": "job", "job_id": job.job_id, "index": body.index},
                "job_id",
            )
        else:
            assert body.url is not None
            key = self._assets.key_of_url(body.url) or ""
            match = _ASSET_KEY.match(key)
            if match is None or match.group("org") != ctx.org_id:
                raise NotFound("No image of this organization at that URL")
            source = {"type": "url", "job_id": match.group("job"), "index": int(match.group("index"))}
            field = "url"
        data_or_none = self._assets.read(key, MAX_ANALYZED_BYTES)
        if data_or_none is None:
            raise NotFound("No such image")
        return data_or_none, source, field

    # -- internals ---------------------------------------------------------------------------

    def _plan(self, ctx: RequestContext, body: ImageJobRequest, prefix: str = "") -> ImagePlan:
        if body.template_id is not None:
            return self._plan_template(ctx, body, prefix)
        return self._plan_request(ctx, body, body.feature, prefix)

    def _plan_request(
        self, ctx: RequestContext, request: ImageJobRequest, feature: str | None, prefix: str
    ) -> ImagePlan:
        """The plan of a request that states its prompt (written, or rendered from a template)."""
        assert request.prompt is not None
        return self._plan_fields(
            ctx,
            prompt=request.prompt,
            model=request.model,
            size=request.size,
            quality=request.quality,
            style=request.style,
            n=request.n,
            negative_prompt=request.negative_prompt,
            seed=request.seed,
            context=request.context,
            entity=request.entity.model_dump() if request.entity else None,
            cache=request.cache,
            feature=feature,
            metadata=request.metadata,
            prefix=prefix,
        )

    def _plan_template(self, ctx: RequestContext, body: ImageJobRequest, prefix: str) -> ImagePlan:
        """A job from an image template: the version the caller may read (the current one, or
        ``template_version``) rendered with ``variables``; the template's ``model``, ``size``,
        ``quality``, ``style`` and ``n`` under the request's own; charged at its declared price
        or as its feature (a request naming another ``feature`` is ``422``), else as the request
        says; the plan names the version, for the job's record and its use count."""
        assert body.template_id is not None
        if self._templates is None:
            raise NotFound("Templates are not available here")
        try:
            rendered = self._templates.render_image(
                ctx.caller,
                body.template_id,
                body.variables,
                version=body.template_version,
                overrides=body.model_dump(include=set(IMAGE_PARAMS), exclude_unset=True),
            )
            refuse_another_feature(rendered.feature, body.feature)
            try:
                request = ImageJobRequest.model_validate(
                    {
                        **body.model_dump(exclude_unset=True, exclude={*_TEMPLATE_FIELDS, "feature"}),
                        **rendered.as_fields(),
                    }
                )
            except ValidationError as exc:
                raise ValidationFailed(field_errors(exc)) from None
        except ValidationFailed as exc:  # named as the request's fields (in a batch, its item's)
            named = {"version": "template_version"}
            raise ValidationFailed(
                [replace(e, field=prefix + named.get(e.field, e.field)) for e in exc.errors]
            ) from None
        plan = self._plan_request(ctx, request, rendered.feature or body.feature, prefix)
        return replace(plan, pricing=rendered.pricing, template=rendered.use)

    def _plan_fields(
        self,
        ctx: RequestContext,
        *,
        prompt: str,
        model: str,
        size: str | None,
        quality: str | None,
        style: str | None,
        n: int,
        negative_prompt: str | None = None,
        seed: int | None = None,
        context: Mapping[str, Any] | None = None,
        entity: Mapping[str, str] | None = None,
        cache: CacheOptions | None = None,
        feature: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        prefix: str = "",
    ) -> ImagePlan:
        # Content security first: everything after this sees the redacted prompt only.
        scanned = scan_texts([prompt], ctx.org.policy, self._limits)
        return plan_image(
            ctx.org_id,
            registry=self._registry,
            configured=self._providers.configured(),
            prices=self._metering.pricing.prices,
            prompt=scanned.texts[0],
            model=model,
            size=size,
            quality=quality,
            style=style,
            n=n,
            negative_prompt=negative_prompt,
            seed=seed,
            context=context,
            entity=entity,
            cache=cache,
            feature=feature,
            metadata=metadata,
            findings=[finding.as_record() for finding in scanned.findings],
            field_prefix=prefix,
        )

    def _new_job(
        self, ctx: RequestContext, plan: ImagePlan, now: datetime, *, batch_id: str | None = None
    ) -> ImageJob:
        return ImageJob(
            job_id=new_id(JOB_PREFIX),
            org_id=ctx.org_id,
            user=ctx.caller.user,
            key_id=ctx.caller.key_id,
            status=JobStatus.PENDING,
            spec=plan.spec,
            feature=plan.feature,
            model=plan.first.name,
            provider=plan.first.provider,
            prompt_hash=plan.prompt_hash,
            created_at=now,
            updated_at=now,
            context_hash=plan.context_hash,
            context=plan.context,
            entity=plan.entity,
            batch_id=batch_id,
            keep_prompt=ctx.org.keep_prompts,
            cache_ttl_seconds=plan.cache_ttl_seconds,
            findings=plan.findings,
            template=plan.template,
        )

    def _find(self, org_id: str, plan: ImagePlan, now: datetime) -> DedupHit | None:
        """An earlier asset for the same prompt, else for the same context (unless skipped)."""
        if plan.cache_ttl_seconds is None:
            return None
        for digest in plan.hashes:
            try:
                hit = self._jobs.find(org_id, digest, now)
            except Exception:  # the index is best effort: a failed read is a miss
                logger.exception("the asset index could not be read; answering as a miss")
                return None
            if hit is not None and len(hit.assets) == plan.spec.n:
                return hit
        return None

    def _reuse_in_batch(self, job: ImageJob, hit: DedupHit, now: datetime) -> ImageJob:
        try:
            return self._billing.reuse_part(job, hit, now)
        except Exception as exc:  # the source job vanished, or AWS failed: this job fails
            logger.exception("a deduplicated job of a batch could not be completed")
            failed = replace(
                job, status=JobStatus.FAILED, error=error_of(exc), updated_at=now, completed_at=now
            )
            assert job.batch_id is not None
            try:
                self._metering.release_part(
                    job.org_id,
                    job.batch_id,
                    job.job_id,
                    attach=lambda _released: self._jobs.stage_new(failed, log_entry(failed)),
                )
            except Exception:
                logger.exception("could not release a deduplicated job of a batch")
            return failed

    def cost_of(self, job: ImageJob, model: str) -> int:
        """The provider cost of the job's images by ``model`` (the price table's figure)."""
        try:
            return self._metering.pricing.prices.cost_micro_usd(actual_usage(model, job.spec, job.spec.n))
        except UnknownPrice:
            return 0

    def _read_all(self, job: ImageJob) -> tuple[bytes, ...]:
        found = []
        for asset in job.assets:
            data = self._assets.read(asset.key, MAX_ANALYZED_BYTES)
            if data is None:
                raise ServiceUnavailable("A stored image could not be read; retry shortly")
            found.append(data)
        return tuple(found)

    def _log_refused(self, job: ImageJob, exc: TollgateError) -> None:
        """A refused request (402, 429, ...) leaves its usage log entry, and no job."""
        now = self._clock.now()
        failed = replace(job, status=JobStatus.FAILED, error=error_of(exc), updated_at=now, completed_at=now)
        self._write_log(log_entry(failed))

    def _log_unplanned(
        self,
        ctx: RequestContext,
        request_id: str,
        model: str,
        feature: str | None,
        kind: str,
        exc: Exception,
    ) -> None:
        """A request refused before it became a job (content blocked, a batch refused whole)
        leaves one usage log entry."""
        self._write_log(
            UsageLogEntry(
                request_id=request_id,
                org_id=ctx.org_id,
                user=ctx.caller.user,
                key_id=ctx.caller.key_id,
                model=model,
                provider=model.partition("/")[0] if "/" in model else "",
                feature=feature or "image",
                kind=kind,
                input_tokens=0,
                output_tokens=0,
                cost_micro_usd=0,
                credits=0,
                latency_ms=0,
                cache_hit=False,
                status=UsageStatus.FAILED,
                error_class=type(exc).__name__,
                at=self._clock.now(),
            )
        )

    def _release_unstored(self, job: ImageJob, exc: Exception) -> None:
        """The job could not be stored after its reservation: give the credits back."""
        now = self._clock.now()
        failed = replace(job, status=JobStatus.FAILED, error=error_of(exc), updated_at=now, completed_at=now)
        try:
            self._metering.release(
                job.org_id, job.job_id, attach=lambda _released: self._usage_log.stage(log_entry(failed))
            )
        except Exception:  # the stale-hold sweep releases it later
            logger.exception("could not release the reservation of a job that was not stored")

    def _release_batch(self, ctx: RequestContext, batch_id: str, feature: str, exc: Exception) -> None:
        try:
            self._metering.release(ctx.org_id, batch_id)
        except Exception:  # the stale-hold sweep releases it later
            logger.exception("could not release the reservation of a batch that was not stored")
        self._log_unplanned(ctx, batch_id, "batch", feature, "image_batch", exc)

    def _write_log(self, entry: UsageLogEntry) -> None:
        try:
            self._usage_log.write(entry)
        except Exception:  # the client must get the real error, not a storage one
            logger.exception("could not write a usage log entry")


__all__ = ["Analysis", "BatchView", "ImageService", "Submitted", "SyncImages"]
