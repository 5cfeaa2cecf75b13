"""Pricing: what a usage costs the provider (price table) and what it costs the org (feature rule).

Everything is integer arithmetic with explicit rounding UP (``ceil_div``): a fraction of a
micro-USD or of a credit unit is always charged as a whole one, never lost to a float.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tollgate.errors import InvalidRequest
from tollgate.metering.models import Charge, Usage
from tollgate.plans import Kind
from tollgate.units import BASIS_POINTS

TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per 1M tokens


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounding up (for non-negative numerators)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    if numerator < 0:
        raise ValueError("numerator must not be negative")
    return -(-numerator // denominator)


class UnknownPrice(InvalidRequest):
    """The price table has no price for this provider/model (or image size/quality)."""


class UnknownFeature(InvalidRequest):
    """No billable feature of this name."""


# -- price table -----------------------------------------------------------------------------


class ModelPrice(BaseModel):
    """One provider/model: token prices per 1M tokens and image prices, in micro-USD."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    input_per_million: int = Field(0, ge=0)
    output_per_million: int = Field(0, ge=0)
    images: dict[str, dict[Literal["standard", "hd"], Annotated[int, Field(ge=0)]]] = Field(
        default_factory=dict
    )


class PriceTable(BaseModel):
    """The versioned provider price table (``data/prices.toml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    version: str
    models: dict[str, ModelPrice]

    def price(self, provider: str | None, model: str | None) -> ModelPrice:
        """The price of ``provider/model``; ``UnknownPrice`` when absent."""
        name = f"{provider}/{model}"
        found = self.models.get(name)
        if found is None:
            raise UnknownPrice(f"No price for model {name!r} in price table {self.version}")
        return found

    def cost_micro_usd(self, usage: Usage) -> int:
        """Provider cost of a usage in micro-USD, rounded up. A reported cost wins over the table."""
        if usage.cost_micro_usd is not None:
            if usage.cost_micro_usd < 0:
                raise InvalidRequest("A provider cost cannot be negative")
            return usage.cost_micro_usd
        if usage.input_tokens < 0 or usage.output_tokens < 0 or usage.images < 0:
            raise InvalidRequest("Token and image counts cannot be negative")
        if usage.tokens == 0 and usage.images == 0:
            return 0
        price = self.price(usage.provider, usage.model)
        token_cost = ceil_div(
            usage.input_tokens * price.input_per_million + usage.output_tokens * price.output_per_million,
            TOKENS_PER_PRICE_UNIT,
        )
        return token_cost + usage.images * self.image_price(price, usage)

    def image_price(self, price: ModelPrice, usage: Usage) -> int:
        """The price of one image of the usage's size and quality (standard by default)."""
        if usage.images == 0:
            return 0
        size = usage.image_size or "1024x1024"
        quality = usage.image_quality or "standard"
        by_quality = price.images.get(size)
        if by_quality is None:
            raise UnknownPrice(f"No price for {size} images of {usage.provider}/{usage.model}")
        if quality not in by_quality:
            raise UnknownPrice(f"No price for {quality} {size} images of {usage.provider}/{usage.model}")
        return by_quality[quality]


# -- features --------------------------------------------------------------------------------


class CacheHitRule(BaseModel):
    """How a cache hit is charged: free, or a flat number of credit units."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    rule: Literal["free", "flat"] = "free"
    credits: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _free_is_zero(self) -> CacheHitRule:
        if self.rule == "free" and self.credits:
            raise ValueError("a free cache-hit rule cannot carry credits")
        return self


class FeatureRule(BaseModel):
    """A billable feature and its pricing rule. Templates may declare their own."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str
    title: str = ""
    kind: Kind | None = None
    rule: Literal["flat", "cost_plus"]
    credits: int = Field(0, ge=0)  # flat: credit units per call
    markup_bp: int = Field(BASIS_POINTS, ge=0)  # cost_plus: multiplier in basis points
    minimum_credits: int = Field(0, ge=0)  # cost_plus: floor per call
    cache_hit: CacheHitRule | None = None

    @model_validator(mode="after")
    def _rule_fields(self) -> FeatureRule:
        if self.rule == "flat" and self.markup_bp != BASIS_POINTS:
            raise ValueError(f"feature {self.name}: markup_bp only applies to cost_plus")
        if self.rule == "cost_plus" and self.credits:
            raise ValueError(f"feature {self.name}: credits only applies to flat")
        return self


class Conversion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    micro_usd_per_credit: int = Field(gt=0)


class FeatureDefaults(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    cache_hit: CacheHitRule = CacheHitRule(rule="free", credits=0)


class FeatureCatalog(BaseModel):
    """The features of ``data/features.toml`` with the conversion rate; prices a usage."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    version: str
    conversion: Conversion
    defaults: FeatureDefaults = FeatureDefaults(cache_hit=CacheHitRule(rule="free", credits=0))
    features: dict[str, FeatureRule]

    def get(self, name: str) -> FeatureRule:
        found = self.features.get(name)
        if found is None:
            known = ", ".join(sorted(self.features))
            raise UnknownFeature(f"Unknown feature {name!r}; known features: {known}")
        return found

    def resolve(self, feature: str | FeatureRule) -> FeatureRule:
        """A feature by name, or a template-declared rule as given."""
        return feature if isinstance(feature, FeatureRule) else self.get(feature)

    def credits_for_cost(self, cost_micro_usd: int, markup_bp: int) -> int:
        """Provider cost x markup, converted to credit units, rounded up."""
        return ceil_div(
            cost_micro_usd * markup_bp * 10_000,  # 10_000 credit units per credit
            BASIS_POINTS * self.conversion.micro_usd_per_credit,
        )


class Pricing:
    """Prices usages: the provider cost from the price table, credits from the feature's rule."""

    def __init__(self, features: FeatureCatalog, prices: PriceTable) -> None:
        self.features = features
        self.prices = prices

    def charge(self, feature: str | FeatureRule, usage: Usage) -> Charge:
        """What ``usage`` of ``feature`` costs. A cache hit costs the provider nothing."""
        rule = self.features.resolve(feature)
        if usage.cache_hit:
            hit = rule.cache_hit or self.features.defaults.cache_hit
            return Charge(rule.name, "cache_hit", 0, hit.credits if hit.rule == "flat" else 0, 0)
        cost = self.prices.cost_micro_usd(usage) if rule.rule == "cost_plus" else self._cost_if_known(usage)
        if rule.rule == "flat":
            credits = rule.credits
        else:
            credits = max(self.features.credits_for_cost(cost, rule.markup_bp), rule.minimum_credits)
        return Charge(rule.name, rule.rule, cost, credits, usage.tokens)

    def _cost_if_known(self, usage: Usage) -> int:
        # A flat feature still records the provider cost (cost limits count it) when priced.
        try:
            return self.prices.cost_micro_usd(usage)
        except UnknownPrice:
            return 0


def _read_toml(name: str) -> dict[str, object]:
    return tomllib.loads(resources.files("tollgate").joinpath(f"data/{name}").read_text("utf-8"))


@cache
def load_prices() -> PriceTable:
    """The price table of ``data/prices.toml``, validated."""
    return PriceTable.model_validate(_read_toml("prices.toml"))


@cache
def load_features() -> FeatureCatalog:
    """The features of ``data/features.toml``, validated (each named by its table key)."""
    raw = _read_toml("features.toml")
    features = raw.get("features")
    if not isinstance(features, dict):
        raise ValueError("features.toml has no [features] tables")
    named = {name: {"name": name, **body} for name, body in features.items()}
    return FeatureCatalog.model_validate({**raw, "features": named})


def default_pricing() -> Pricing:
    return Pricing(load_features(), load_prices())
