"""Request bodies of the image API (S7): a job, a batch of jobs, and a colour analysis.

The OpenAI-compatible ``POST /v1/images/generations`` body is
``tollgate.generation.requests.ImageGenerationRequest``. Unknown fields are refused (``422``
naming them); the prompt is kept exactly as sent.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from tollgate.generation.cache_key import CacheOptions
from tollgate.generation.registry import parse_size
from tollgate.generation.requests import FeatureName, GenerationBody, ModelName

MAX_BATCH_ITEMS = 100
MAX_JOB_IMAGES = 4
"""Images one job may ask for (``n``): a worker makes them one after the other."""
MAX_CONTEXT_BYTES = 4_096
MAX_UPLOAD_BYTES = 786_432
"""The largest image ``/v1/images/analyze`` takes inline (768 KiB, 1 MiB as base64)."""
MAX_PALETTE = 12

Prompt = Annotated[str, Field(min_length=1, max_length=32_000)]


class EntityRef(GenerationBody):
    """What the image is for, in the client's own terms (``{"type": "product", "id": "42"}``)."""

    type: str = Field(min_length=1, max_length=64)
    id: str = Field(min_length=1, max_length=200)


class ImageJobRequest(GenerationBody):
    """``POST /v1/images`` and each item of ``POST /v1/images/batch``.

    ``context`` says what the image is for: an earlier image of the org made for the same
    context (and of the same shape) is reused, whatever the prompt's wording. ``template_id``
    and ``variables`` (and ``template_version`` to pin an old version) make the prompt from an
    image template (S8): its parameters under the request's own (``ImageService``).
    """

    prompt: Prompt | None = None
    template_id: str | None = Field(default=None, min_length=1, max_length=64)
    variables: dict[str, Any] | None = None
    template_version: int | None = Field(default=None, ge=1)
    model: ModelName = "default-image"
    size: str | None = None
    quality: str | None = Field(default=None, min_length=1, max_length=20)
    style: str | None = Field(default=None, min_length=1, max_length=40)
    n: int = Field(default=1, ge=1, le=MAX_JOB_IMAGES)
    negative_prompt: str | None = Field(default=None, min_length=1, max_length=10_000)
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    context: dict[str, Any] | None = None
    entity: EntityRef | None = None
    cache: CacheOptions | None = None
    feature: FeatureName | None = None
    metadata: dict[str, Any] | None = Field(default=None, max_length=16)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value

    @field_validator("context")
    @classmethod
    def _context(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            if not value:
                raise ValueError("context must not be empty")
            if len(json.dumps(value, ensure_ascii=False).encode("utf-8")) > MAX_CONTEXT_BYTES:
                raise ValueError(f"context must be at most {MAX_CONTEXT_BYTES} bytes of JSON")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ImageJobRequest:
        if (self.prompt is None) == (self.template_id is None):
            raise ValueError("give exactly one of prompt or template_id")
        if (self.variables is not None or self.template_version is not None) and self.template_id is None:
            raise ValueError("variables and template_version go with template_id")
        return self


class ImageBatchRequest(GenerationBody):
    """``POST /v1/images/batch``: up to 100 jobs, accepted or refused whole."""

    items: list[ImageJobRequest] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class AnalyzeRequest(GenerationBody):
    """``POST /v1/images/analyze``: the palette of an owned asset (by job id, or by the URL of
    one of the org's assets) or of an uploaded image (base64 PNG)."""

    job_id: str | None = Field(default=None, min_length=1, max_length=100)
    index: int = Field(default=0, ge=0, lt=MAX_JOB_IMAGES)
    url: str | None = Field(default=None, min_length=1, max_length=4_096)
    image: str | None = Field(default=None, min_length=1, max_length=(MAX_UPLOAD_BYTES + 2) // 3 * 4)
    colors: int = Field(default=5, ge=1, le=MAX_PALETTE)

    @model_validator(mode="after")
    def _one_source(self) -> AnalyzeRequest:
        given = [name for name in ("job_id", "url", "image") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of job_id, url or image")
        return self


__all__ = [
    "MAX_BATCH_ITEMS",
    "MAX_JOB_IMAGES",
    "MAX_UPLOAD_BYTES",
    "AnalyzeRequest",
    "EntityRef",
    "ImageBatchRequest",
    "ImageJobRequest",
]
