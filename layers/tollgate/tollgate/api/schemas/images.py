"""Answer bodies of the image API (S7): a job, a batch with its progress, a palette.

Credits leave as exact JSON numbers (at most 4 decimals) and provider cost in USD (at most 6),
written by ``exact_json_response``. Image URLs are presigned and expire (``url_expires_at``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tollgate.api.schemas.common import ResponseModel
from tollgate.credits.amounts import client_json, credits_of_units, usd_of_micro

if TYPE_CHECKING:  # annotations only: the domain loads with services.images()
    from tollgate.images.colors import Palette
    from tollgate.images.jobs import BatchProgress, ImageBatch, ImageJob

JOBS_PATH = "/v1/images"
BATCHES_PATH = "/v1/images/batches"


class ImageOut(ResponseModel):
    url: str
    width: int
    height: int
    format: str
    bytes: int
    revised_prompt: str | None


class ImageJobOut(ResponseModel):
    """An image job (S7): its status and, once completed, its images."""

    id: str
    object: str = "image.job"
    status: str
    status_url: str
    requested_model: str
    model: str
    provider: str
    prompt: str | None
    prompt_hash: str
    context_hash: str | None
    size: str
    quality: str | None
    style: str | None
    n: int
    url: str | None
    width: int | None
    height: int | None
    format: str | None
    bytes: int | None
    revised_prompt: str | None
    images: list[ImageOut]
    url_expires_at: datetime | None
    provider_cost_usd: Decimal
    credits_charged: Decimal
    estimated_credits: Decimal
    cached: bool
    source_job_id: str | None
    feature: str
    template_id: str | None
    template_version: int | None
    usage_count: int
    attempts: int
    error: dict[str, Any] | None
    batch_id: str | None
    context: dict[str, Any] | None
    entity: dict[str, Any] | None
    findings: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, job: ImageJob, urls: Sequence[str], url_ttl_seconds: int, now: datetime) -> ImageJobOut:
        images = [
            ImageOut(
                url=url,
                width=asset.width,
                height=asset.height,
                format=asset.format,
                bytes=asset.bytes,
                revised_prompt=asset.revised_prompt,
            )
            for asset, url in zip(job.assets, urls, strict=True)
        ]
        first = images[0] if images else None
        spec = job.spec
        return cls(
            id=job.job_id,
            status=job.status.value,
            status_url=f"{JOBS_PATH}/{job.job_id}",
            requested_model=spec.model,
            model=job.model,
            provider=job.provider,
            prompt=spec.prompt if job.keep_prompt else None,
            prompt_hash=job.prompt_hash,
            context_hash=job.context_hash,
            size=spec.size,
            quality=spec.quality,
            style=spec.style,
            n=spec.n,
            url=first.url if first else None,
            width=first.width if first else None,
            height=first.height if first else None,
            format=first.format if first else None,
            bytes=first.bytes if first else None,
            revised_prompt=first.revised_prompt if first else None,
            images=images,
            url_expires_at=now + timedelta(seconds=url_ttl_seconds) if images else None,
            provider_cost_usd=usd_of_micro(job.cost_micro_usd),
            credits_charged=credits_of_units(job.credits_charged),
            estimated_credits=credits_of_units(job.estimated_credits),
            cached=job.cached,
            source_job_id=job.source_job_id,
            feature=job.feature,
            template_id=job.template_id,
            template_version=job.template_version,
            usage_count=job.usage_count,
            attempts=job.attempts,
            error=dict(job.error) if job.error else None,
            batch_id=job.batch_id,
            context=client_json(dict(job.context)) if job.context else None,
            entity=dict(job.entity) if job.entity else None,
            findings=[dict(f) for f in job.findings],
            created_at=job.created_at,
            updated_at=job.updated_at,
            completed_at=job.completed_at,
        )


class ProgressOut(ResponseModel):
    total: int
    pending: int
    processing: int
    completed: int
    failed: int
    done: int
    percent: int

    @classmethod
    def of(cls, progress: BatchProgress) -> ProgressOut:
        return cls(
            total=progress.total,
            pending=progress.pending,
            processing=progress.processing,
            completed=progress.completed,
            failed=progress.failed,
            done=progress.done,
            percent=progress.percent,
        )


class ImageBatchOut(ResponseModel):
    """A batch of image jobs and its progress."""

    id: str
    object: str = "image.batch"
    status: str
    status_url: str
    progress: ProgressOut
    estimated_credits: Decimal
    credits_charged: Decimal
    jobs: list[ImageJobOut]
    created_at: datetime

    @classmethod
    def of(cls, batch: ImageBatch, jobs: Sequence[ImageJobOut], progress: BatchProgress) -> ImageBatchOut:
        return cls(
            id=batch.batch_id,
            status=progress.status.value,
            status_url=f"{BATCHES_PATH}/{batch.batch_id}",
            progress=ProgressOut.of(progress),
            estimated_credits=credits_of_units(batch.estimated_credits),
            credits_charged=sum((job.credits_charged for job in jobs), Decimal(0)),
            jobs=list(jobs),
            created_at=batch.created_at,
        )


class ColorOut(ResponseModel):
    hex: str
    rgb: list[int]
    share: Decimal  # percent, 2 decimals; the shares of a palette add up to 100
    share_bp: int
    complementary: str


class PaletteOut(ResponseModel):
    object: str = "image.palette"
    source: dict[str, Any]
    width: int
    height: int
    sampled_pixels: int
    colors: list[ColorOut]
    complementary: list[str]
    credits_charged: Decimal

    @classmethod
    def of(cls, found: Palette, source: dict[str, Any], credits_charged: int) -> PaletteOut:
        return cls(
            source=source,
            width=found.width,
            height=found.height,
            sampled_pixels=found.sampled,
            colors=[
                ColorOut(
                    hex=color.hex,
                    rgb=list(color.rgb),
                    share=Decimal(color.share_bp).scaleb(-2),
                    share_bp=color.share_bp,
                    complementary=color.complementary_hex,
                )
                for color in found.colors
            ],
            complementary=[color.complementary_hex for color in found.colors],
            credits_charged=credits_of_units(credits_charged),
        )
