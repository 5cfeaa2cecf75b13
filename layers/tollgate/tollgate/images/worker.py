"""The image worker's domain (S7): one delivery of a job's message, processed at most once in
effect, whatever SQS delivers twice.

For a delivery, in this order:

1. **claim** the job: pending -> processing, or a processing job whose lease expired (the worker
   before died), with a new lease. A job already final is a duplicate delivery: acknowledged,
   nothing done. A job another worker holds (live lease) is left to it: this delivery is
   reported failed and comes back later.
2. A job whose credits the stale-hold sweep released meanwhile fails (``reservation_expired``)
   without calling any provider.
3. **make** the images: the assets already stored for this job (an attempt that died after
   writing them) are used as they are; otherwise the providers of the chain are called and each
   image is written to its key fixed by the job id, only if absent.
4. **settle**: the job becomes completed in the settlement's transaction (with its usage log
   entry and dedup index entries). Settling twice charges once.

On a transient failure (provider 429/5xx/timeout, AWS) the job goes back to pending and the
delivery is reported failed: SQS brings it back after the visibility timeout (partial batch
response: only the failed records of a batch come back). On the final receive
(``ApproximateReceiveCount`` >= the queue's ``maxReceiveCount``), or on a failure that will not
pass (a provider refusing the request), the job's credits are **released** with the job failed
in the same transaction. A final receive is still reported failed, so the message lands in the
DLQ for operators.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from msgspec import Struct

from tollgate.clock import Clock, SystemClock
from tollgate.errors import Conflict, TollgateError
from tollgate.generation.registry import ModelRegistry, ResolvedChain
from tollgate.images.billing import ImageMetering, JobBilling, TemplateUses, error_of
from tollgate.images.generator import Generated, ImageGenerator
from tollgate.images.jobs import AssetStore, ImageJob, ImageJobStore, JobMessage
from tollgate.images.planning import actual_usage, usable_chain
from tollgate.metering.ports import StagedWriteRefused
from tollgate.metering.pricing import UnknownPrice
from tollgate.providers.errors import UpstreamError

if TYPE_CHECKING:
    from tollgate.providers.catalog import ProviderCatalog  # imports httpx; built by tollgate.services

logger = Logger()


class RetryLater(Exception):
    """This delivery did not finish its job: report it failed, SQS delivers it again."""


class Outcome(StrEnum):
    """How a delivery ended (for logs and tests)."""

    COMPLETED = "completed"
    FAILED = "failed"  # the job failed for good; its credits went back
    DUPLICATE = "duplicate"  # the job was final already: nothing done
    UNKNOWN_JOB = "unknown_job"  # no such job (a message not of ours): dropped


class Delivery(Struct, frozen=True):
    """One delivery of a job's message."""

    message: JobMessage
    receive_count: int
    lease_seconds: float


class ImageWorker:
    """Processes deliveries of image job messages."""

    def __init__(
        self,
        providers: ProviderCatalog,
        metering: ImageMetering,
        jobs: ImageJobStore,
        assets: AssetStore,
        registry: ModelRegistry,
        *,
        max_receive_count: int,
        clock: Clock | None = None,
        templates: TemplateUses | None = None,
    ) -> None:
        self._providers = providers
        self._metering = metering
        self._jobs = jobs
        self._registry = registry
        self._max_receive = max_receive_count
        self._clock = clock or SystemClock()
        self._billing = JobBilling(metering, jobs, templates)  # counts a template's use
        self._generator = ImageGenerator(providers, assets)

    def process(self, delivery: Delivery) -> Outcome:
        """Run the job of one delivery (see the module docstring). Raises ``RetryLater`` when
        the delivery must be reported failed (it comes back, or goes to the DLQ)."""
        message = delivery.message
        now = self._clock.now()
        claim = self._jobs.claim(
            message.org_id, message.job_id, now, now + timedelta(seconds=delivery.lease_seconds)
        )
        if claim.job is None:
            logger.warning("a message names no job; dropped", extra={"job_id": message.job_id})
            return Outcome.UNKNOWN_JOB
        job = claim.job
        if not claim.claimed:
            if job.status.is_final:
                return Outcome.DUPLICATE
            raise RetryLater(f"job {job.job_id} is being processed by another worker")
        final = delivery.receive_count >= self._max_receive
        if not self._billing.reservation_open(job):
            self._billing.expire(job, self._clock.now())
            return Outcome.FAILED
        try:
            generated = self._make(job)
        except UpstreamError as exc:
            return self._failed(job, exc, final=final or not exc.retryable, dead_letter=exc.retryable)
        except TollgateError as exc:  # the job cannot be made here (its model, its size): for good
            return self._failed(job, exc, final=True, dead_letter=False)
        except Exception as exc:  # AWS or a bug: transient until the last receive
            logger.exception("an image job failed inside the worker", extra={"job_id": job.job_id})
            return self._failed(job, exc, final=final, dead_letter=True)
        try:
            self._billing.complete(job, generated, self._clock.now())
        except Conflict:  # its credits went back meanwhile (the sweep): it can no longer be charged
            self._billing.expire(job, self._clock.now())
            return Outcome.FAILED
        except StagedWriteRefused:  # made final by another worker: let a later delivery see it
            raise RetryLater(f"job {job.job_id} was finished elsewhere") from None
        except Exception as exc:
            logger.exception("an image job could not be settled", extra={"job_id": job.job_id})
            self._give_up_lease(job, exc)
            raise RetryLater(f"job {job.job_id} could not be settled") from exc
        return Outcome.COMPLETED

    def _make(self, job: ImageJob) -> Generated:
        stored = self._generator.stored(job)
        if stored is not None:
            return stored
        return self._generator.generate(job, self._chain(job), lambda model: self._cost(job, model))

    def _chain(self, job: ImageJob) -> ResolvedChain:
        """The job's chain as configured now, kept to the models that can make its image."""
        spec = job.spec
        resolved = self._registry.resolve(spec.model, configured=self._providers.configured(), kind="image")
        chain, _, _, _ = usable_chain(
            resolved,
            self._metering.pricing.prices,
            size=spec.size,
            quality=spec.quality,
            style=spec.style,
            prompt_chars=len(spec.prompt or ""),
        )
        return chain

    def _cost(self, job: ImageJob, model: str) -> int:
        try:
            return self._metering.pricing.prices.cost_micro_usd(actual_usage(model, job.spec, job.spec.n))
        except UnknownPrice:
            return 0

    def _failed(self, job: ImageJob, exc: Exception, *, final: bool, dead_letter: bool) -> Outcome:
        """A failed attempt: back to pending for a later delivery, or (final) failed for good
        with its credits released. A final failure after retries is still reported failed,
        so that its message lands in the DLQ."""
        if not final:
            self._give_up_lease(job, exc)
            raise RetryLater(f"job {job.job_id} failed; it will be tried again") from exc
        self._billing.fail(job, error_of(exc), self._clock.now())
        if dead_letter:
            raise RetryLater(f"job {job.job_id} failed for good after its last receive") from exc
        return Outcome.FAILED

    def _give_up_lease(self, job: ImageJob, exc: Exception) -> None:
        try:
            self._jobs.retry_later(job, error_of(exc), self._clock.now())
        except Exception:  # the lease expires by itself
            logger.exception("could not put an image job back to pending", extra={"job_id": job.job_id})


def lease_of(remaining_ms: int, margin_seconds: float = 30.0) -> float:
    """How long a claim lasts: the invocation's remaining time, and a margin."""
    return remaining_ms / 1000 + margin_seconds


__all__ = ["Delivery", "ImageWorker", "Outcome", "RetryLater", "lease_of"]
