"""Making a job's images and storing them (S7): the provider call through the fallback chain,
then each image written to its key fixed by the job id, with its metadata.

Written so that doing it twice makes one set of assets: when a job's assets are already in the
store (a worker died after writing them, before settling), they are used as they are and no
provider is called; each object is written only if absent, so a second writer keeps the first
writer's object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, cast

from msgspec import Struct

from tollgate.generation.fallback import FailedAttempt, call_with_fallback
from tollgate.generation.registry import ModelSpec, ResolvedChain, parse_size
from tollgate.images.jobs import (
    CONTENT_TYPES,
    Asset,
    AssetStore,
    ImageJob,
    StoredObject,
    asset_key,
    asset_prefix,
)
from tollgate.providers.base import ImageFormat, ImageRequest, ImageResult, Provider
from tollgate.providers.errors import UpstreamError
from tollgate.providers.imaging import image_info

if TYPE_CHECKING:
    from tollgate.providers.catalog import ProviderCatalog  # imports httpx; built by tollgate.services

# S3 user metadata (x-amz-meta-*): lower case, ASCII.
META_ORG = "org"
META_JOB = "job"
META_INDEX = "index"
META_PROMPT_HASH = "prompt-hash"
META_CONTEXT_HASH = "context-hash"
META_MODEL = "model"
META_COST = "cost-micro-usd"
META_FORMAT = "format"
META_WIDTH = "width"
META_HEIGHT = "height"
META_REVISED = "revised-prompt"
_MAX_META_TEXT = 1_024  # S3 keeps at most 2 KB of user metadata per object


class Generated(Struct, frozen=True):
    """A job's images, stored: which model made them, what it reported, what failed first."""

    assets: tuple[Asset, ...]
    model: str  # provider/name
    fallbacks: tuple[FailedAttempt, ...] = ()
    reused: bool = False  # found in the store: no provider was called this time
    data: tuple[bytes, ...] = ()  # the images' bytes, when this call drew them


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")[:_MAX_META_TEXT]


def _asset_of(stored: StoredObject) -> Asset | None:
    meta = stored.metadata
    try:
        image_format = cast(ImageFormat, meta[META_FORMAT])
        if image_format not in CONTENT_TYPES:
            return None
        return Asset(
            key=stored.key,
            format=image_format,
            width=int(meta[META_WIDTH]),
            height=int(meta[META_HEIGHT]),
            bytes=stored.bytes,
            revised_prompt=meta.get(META_REVISED) or None,
        )
    except (KeyError, ValueError):
        return None


class ImageGenerator:
    """Calls the providers of a chain for a job and stores what they draw."""

    def __init__(self, providers: ProviderCatalog, assets: AssetStore) -> None:
        self._providers = providers
        self._assets = assets

    def stored(self, job: ImageJob) -> Generated | None:
        """The job's assets if all of them are in the store already (an earlier attempt)."""
        found = sorted(self._assets.objects(asset_prefix(job.org_id, job.job_id)), key=lambda o: o.key)
        by_index: dict[int, tuple[Asset, Mapping[str, str]]] = {}
        for stored in found:
            asset = _asset_of(stored)
            if asset is not None and stored.metadata.get(META_INDEX, "").isdigit():
                by_index[int(stored.metadata[META_INDEX])] = (asset, stored.metadata)
        if sorted(by_index) != list(range(job.spec.n)):
            return None
        return Generated(
            assets=tuple(by_index[i][0] for i in range(job.spec.n)),
            model=by_index[0][1].get(META_MODEL) or job.model,
            reused=True,
        )

    def generate(self, job: ImageJob, chain: ResolvedChain, cost_of: Callable[[str], int]) -> Generated:
        """Call the chain's models in turn until one draws the job's images, then store them.
        ``cost_of(model)`` is the provider cost of the job by that model (for the metadata).
        Raises the provider's ``UpstreamError`` when every model fails."""
        spec = job.spec
        assert spec.prompt is not None, "a job keeps its prompt until it is done"
        width, height = parse_size(spec.size)

        def invoke(provider: Provider, model: ModelSpec) -> ImageResult:
            return provider.generate_images(
                ImageRequest(
                    model=model.model_id,
                    prompt=spec.prompt or "",
                    width=width,
                    height=height,
                    quality=spec.quality if model.qualities else None,
                    style=spec.style if model.styles else None,
                    n=spec.n,
                    negative_prompt=spec.negative_prompt,
                    seed=spec.seed,
                    metadata=dict(spec.metadata),
                )
            )

        answered = call_with_fallback(chain, self._providers, invoke)
        result = answered.value
        if len(result.images) < spec.n:
            raise UpstreamError(
                f"{answered.model.name} made {len(result.images)} of {spec.n} images",
                provider=answered.model.provider,
                upstream_code="too_few_images",
                retryable=True,
            )
        cost = cost_of(answered.model.name)
        assets = []
        kept_earlier = False
        for index, image in enumerate(result.images[: spec.n]):
            info = image_info(image.data)
            image_format: ImageFormat = info.format if info else image.format
            width_found = info.width if info else image.width
            height_found = info.height if info else image.height
            key = asset_key(job.org_id, job.job_id, index, image_format)
            metadata = {
                META_ORG: job.org_id,
                META_JOB: job.job_id,
                META_INDEX: str(index),
                META_PROMPT_HASH: job.prompt_hash,
                META_CONTEXT_HASH: job.context_hash or "",
                META_MODEL: answered.model.name,
                META_COST: str(cost),
                META_FORMAT: image_format,
                META_WIDTH: str(width_found),
                META_HEIGHT: str(height_found),
            }
            if image.revised_prompt:
                metadata[META_REVISED] = _ascii(image.revised_prompt)
            # Written only if absent: when another delivery of this job got here first, its
            # object stays and is the asset (one asset per key, ever).
            if not self._assets.put_new(key, image.data, CONTENT_TYPES[image_format], metadata):
                kept_earlier = True
            assets.append(
                Asset(
                    key=key,
                    format=image_format,
                    width=width_found,
                    height=height_found,
                    bytes=len(image.data),
                    revised_prompt=image.revised_prompt,
                    seed=image.seed,
                )
            )
        if kept_earlier:
            earlier = self.stored(job)
            if earlier is not None:
                return earlier
        return Generated(
            tuple(assets),
            answered.model.name,
            answered.failed,
            data=tuple(image.data for image in result.images[: spec.n]),
        )


def fallbacks_of(failed: Sequence[FailedAttempt]) -> tuple[Mapping[str, object], ...]:
    return tuple({"model": f.model, "code": f.code, "provider_status": f.status} for f in failed)
