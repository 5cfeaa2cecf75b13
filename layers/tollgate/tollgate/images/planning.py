"""From an image request to what will be drawn, by which models, for how much (S4, S7).

``plan_image`` resolves the model or alias into its chain of configured models and keeps those
that can make the image asked for: the size among the model's sizes, the quality and style
among its own (a model that lists none ignores them), the prompt within its length, and a
price in the price table for that size and quality. The estimate reserved is the dearest of
those models (an upper bound whichever answers); the hashes that deduplicate the image are
computed here, from the prompt as the provider gets it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field

from tollgate.errors import FieldError, ValidationFailed
from tollgate.generation.cache_key import CacheOptions, cache_ttl, image_context_hash, image_prompt_hash
from tollgate.generation.registry import ModelRegistry, ModelSpec, ResolvedChain
from tollgate.images.jobs import ImageSpec
from tollgate.metering.models import Usage
from tollgate.metering.pricing import FeatureRule, PriceTable, UnknownPrice

if TYPE_CHECKING:  # only a job made from a template has one (the templates load with their service)
    from tollgate.templates.models import TemplateUse

DEFAULT_FEATURE = "image"
DEFAULT_QUALITY = "standard"


class ImagePlan(Struct, frozen=True):
    """An image request checked and priced: the spec, the models that can make it (in the
    chain's order), the estimate to reserve, and its dedup hashes. A plan made from a template
    (S8) names its version (``template``) and may carry its declared price (``pricing``),
    charged instead of a ``feature`` of the catalog."""

    spec: ImageSpec
    chain: ResolvedChain
    feature: str
    estimate: Usage
    prompt_hash: str
    context_hash: str | None
    cache_ttl_seconds: int | None  # None: the cache is skipped (neither read nor written)
    context: Mapping[str, Any] | None = None
    entity: Mapping[str, str] | None = None
    findings: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    pricing: FeatureRule | None = None
    template: TemplateUse | None = None

    @property
    def charged_as(self) -> str | FeatureRule:
        """What the reservation charges: the template's declared rule, else the feature."""
        return self.pricing or self.feature

    @property
    def first(self) -> ModelSpec:
        return self.chain.models[0]

    @property
    def hashes(self) -> tuple[str, ...]:
        """The hashes the plan's assets are found under: the prompt's, then the context's."""
        return (self.prompt_hash, self.context_hash) if self.context_hash else (self.prompt_hash,)


def _split(name: str) -> tuple[str, str]:
    provider, _, model = name.partition("/")
    return provider, model


def image_price(prices: PriceTable, spec: ModelSpec, size: str, quality: str | None) -> int | None:
    """The price of one image of ``spec`` at that size and quality, ``None`` if not priced."""
    provider, model = _split(spec.name)
    try:
        return prices.image_price(
            prices.price(provider, model),
            Usage(provider=provider, model=model, images=1, image_size=size, image_quality=quality),
        )
    except UnknownPrice:
        return None


def _serves(spec: ModelSpec, size: str, quality: str | None, style: str | None, prompt_chars: int) -> bool:
    return (
        size in spec.sizes
        and (quality is None or not spec.qualities or quality in spec.qualities)
        and (style is None or not spec.styles or style in spec.styles)
        and prompt_chars <= spec.context_window
    )


def usable_chain(
    chain: ResolvedChain,
    prices: PriceTable,
    *,
    size: str | None,
    quality: str | None,
    style: str | None,
    prompt_chars: int,
    field_prefix: str = "",
) -> tuple[ResolvedChain, str, str | None, int]:
    """The models of ``chain`` that can make this image, the size (the first model's default
    when none is asked), the quality priced, and the dearest price of one image.
    ``ValidationFailed`` naming the field when no model can."""
    first = chain.models[0]
    size = size or first.default_size
    assert size is not None  # an image model always has sizes (the registry checks it)
    priced_quality = quality or (DEFAULT_QUALITY if DEFAULT_QUALITY in first.qualities else None)
    usable = []
    prices_found = []
    for spec in chain.models:
        if not _serves(spec, size, quality, style, prompt_chars):
            continue
        price = image_price(prices, spec, size, priced_quality if spec.qualities else None)
        if price is not None:
            usable.append(spec)
            prices_found.append(price)
    if not usable:
        raise ValidationFailed([_why_not(first, prices, size, quality, style, prompt_chars, field_prefix)])
    return (
        ResolvedChain(
            requested=chain.requested, alias=chain.alias, models=tuple(usable), skipped=chain.skipped
        ),
        size,
        priced_quality,
        max(prices_found),
    )


def _why_not(
    spec: ModelSpec,
    prices: PriceTable,
    size: str,
    quality: str | None,
    style: str | None,
    prompt_chars: int,
    prefix: str,
) -> FieldError:
    name = spec.name
    if size not in spec.sizes:
        return FieldError(
            f"{prefix}size", f"{name} makes {', '.join(spec.sizes)}, not {size}", "unsupported_size"
        )
    if quality is not None and spec.qualities and quality not in spec.qualities:
        listed = ", ".join(spec.qualities)
        return FieldError(f"{prefix}quality", f"{name} offers {listed}, not {quality}", "unsupported_quality")
    if style is not None and spec.styles and style not in spec.styles:
        listed = ", ".join(spec.styles)
        return FieldError(f"{prefix}style", f"{name} offers {listed}, not {style}", "unsupported_style")
    if prompt_chars > spec.context_window:
        return FieldError(
            f"{prefix}prompt", f"{name} takes prompts of at most {spec.context_window} characters", "too_long"
        )
    return FieldError(
        f"{prefix}quality", f"{name} has no price for {quality or DEFAULT_QUALITY} {size} images", "unpriced"
    )


def plan_image(
    org_id: str,
    *,
    registry: ModelRegistry,
    configured: frozenset[str],
    prices: PriceTable,
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
    findings: Sequence[Mapping[str, Any]] = (),
    field_prefix: str = "",
) -> ImagePlan:
    """The plan of one image request (``prompt`` already through content security)."""
    try:
        resolved = registry.resolve(model, configured=configured, kind="image")
    except ValidationFailed as exc:
        if not field_prefix:
            raise
        raise ValidationFailed(
            [FieldError(field_prefix + e.field, e.message, e.kind) for e in exc.errors]
        ) from None
    chain, size, priced_quality, dearest = usable_chain(
        resolved,
        prices,
        size=size,
        quality=quality,
        style=style,
        prompt_chars=len(prompt),
        field_prefix=field_prefix,
    )
    first = chain.models[0]
    provider, name = _split(first.name)
    quality = quality or priced_quality
    spec = ImageSpec(
        prompt=prompt,
        model=model,
        size=size,
        quality=quality,
        style=style,
        n=n,
        negative_prompt=negative_prompt,
        seed=seed,
        metadata=dict(metadata or {}),
    )
    prompt_hash = image_prompt_hash(
        org_id,
        provider,
        model,
        prompt,
        size=size,
        quality=quality,
        style=style,
        n=n,
        negative_prompt=negative_prompt,
        seed=seed,
    )
    context_hash = (
        image_context_hash(org_id, provider, model, context, size=size, quality=quality, style=style, n=n)
        if context
        else None
    )
    estimate = Usage(
        provider=provider,
        model=name,
        images=n,
        image_size=size,
        image_quality=quality,
        cost_micro_usd=dearest * n,  # the dearest model of the chain: an upper bound
    )
    skip = cache is not None and cache.skip
    return ImagePlan(
        spec=spec,
        chain=chain,
        feature=feature or DEFAULT_FEATURE,
        estimate=estimate,
        prompt_hash=prompt_hash,
        context_hash=context_hash,
        cache_ttl_seconds=None if skip else cache_ttl("image", cache),
        context=dict(context) if context else None,
        entity=dict(entity) if entity else None,
        findings=tuple(findings),
    )


def actual_usage(
    provider_model: str, spec: ImageSpec, images: int, reported_cost: int | None = None
) -> Usage:
    """What a job used: ``images`` of its size and quality from the model that made them."""
    provider, name = _split(provider_model)
    return Usage(
        provider=provider,
        model=name,
        images=images,
        image_size=spec.size,
        image_quality=spec.quality,
        cost_micro_usd=reported_cost,
    )
