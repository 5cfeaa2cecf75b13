"""Pricing: the price table (with the DALL-E 3 figures), flat and cost-plus rules, rounding up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tollgate.metering.models import Usage
from tollgate.metering.pricing import (
    FeatureCatalog,
    FeatureRule,
    Pricing,
    UnknownFeature,
    UnknownPrice,
    ceil_div,
    default_pricing,
    load_features,
    load_prices,
)


@pytest.fixture
def pricing() -> Pricing:
    return default_pricing()


def dalle(size: str, quality: str) -> Usage:
    return Usage(provider="openai", model="dall-e-3", images=1, image_size=size, image_quality=quality)


@pytest.mark.parametrize(
    ("size", "quality", "micro_usd"),
    [
        ("1024x1024", "standard", 40_000),
        ("1024x1024", "hd", 80_000),
        ("1792x1024", "standard", 80_000),
        ("1792x1024", "hd", 120_000),
        ("1024x1792", "standard", 80_000),
        ("1024x1792", "hd", 120_000),
    ],
)
def test_dall_e_3_prices_are_the_published_ones(
    pricing: Pricing, size: str, quality: str, micro_usd: int
) -> None:
    # Given the shipped price table, then one DALL-E 3 image costs exactly the published price
    assert pricing.prices.cost_micro_usd(dalle(size, quality)) == micro_usd


def test_an_image_is_charged_cost_plus_markup_in_exact_credit_units(pricing: Pricing) -> None:
    # Given the image feature: cost x 1.3 at $0.01 per credit
    # When two hd 1792x1024 images are priced
    charge = pricing.charge(
        "image",
        Usage(provider="openai", model="dall-e-3", images=2, image_size="1792x1024", image_quality="hd"),
    )

    # Then $0.24 of provider cost becomes $0.312 = 31.2 credits = 312,000 units
    assert (charge.cost_micro_usd, charge.credits, charge.rule) == (240_000, 312_000, "cost_plus")


def test_fractions_are_rounded_up_never_lost(pricing: Pricing) -> None:
    # Given gpt-4o-mini at $0.15 / 1M input tokens: one token costs 0.15 micro-USD
    one_token = Usage(provider="openai", model="gpt-4o-mini", input_tokens=1)

    # When it is priced as chat (x 1.5), then both roundings go up: 1 micro-USD, then 2 units (1.5)
    charge = pricing.charge("chat", one_token)
    assert (charge.cost_micro_usd, charge.credits) == (1, 2)
    # And a realistic call: 1,200 in + 350 out = 180 + 210 = 390 micro-USD -> 585 units exactly
    charge = pricing.charge(
        "chat", Usage(provider="openai", model="gpt-4o-mini", input_tokens=1_200, output_tokens=350)
    )
    assert (charge.cost_micro_usd, charge.credits, charge.tokens) == (390, 585, 1_550)


def test_every_money_figure_is_an_integer(pricing: Pricing) -> None:
    charge = pricing.charge(
        "chat",
        Usage(provider="anthropic", model="claude-3-5-haiku-20241022", input_tokens=333, output_tokens=777),
    )
    assert all(type(v) is int for v in (charge.cost_micro_usd, charge.credits, charge.tokens))
    assert (ceil_div(10, 3), ceil_div(9, 3), ceil_div(0, 7)) == (4, 3, 0)


def test_a_flat_feature_costs_its_price_whatever_the_provider_cost(pricing: Pricing) -> None:
    # Given color_analysis: 0.5 credit per call
    assert pricing.charge("color_analysis", Usage()).credits == 5_000
    assert (
        pricing.charge("color_analysis", Usage(provider="mock", model="chat", input_tokens=10**6)).credits
        == 5_000
    )


def test_a_cache_hit_is_free_by_default_and_a_feature_may_price_it(pricing: Pricing) -> None:
    usage = Usage(provider="openai", model="gpt-4o", input_tokens=5_000, output_tokens=5_000, cache_hit=True)
    # Given the default cache-hit rule, then a hit costs nothing and used no provider tokens
    hit = pricing.charge("chat", usage)
    assert (hit.credits, hit.cost_micro_usd, hit.tokens, hit.rule) == (0, 0, 0, "cache_hit")
    # And a template feature may charge a flat price for a hit
    summarize = FeatureRule(
        name="summarize",
        kind="chat",
        rule="cost_plus",
        markup_bp=20_000,
        cache_hit={"rule": "flat", "credits": 100},
    )  # type: ignore[arg-type]
    assert pricing.charge(summarize, usage).credits == 100


def test_a_reported_provider_cost_wins_over_the_table(pricing: Pricing) -> None:
    charge = pricing.charge("chat", Usage(provider="openai", model="unknown-model", cost_micro_usd=1_000))
    assert (charge.cost_micro_usd, charge.credits) == (1_000, 1_500)


def test_unknown_models_sizes_and_features_are_client_errors(pricing: Pricing) -> None:
    with pytest.raises(UnknownPrice) as no_model:
        pricing.charge("chat", Usage(provider="openai", model="gpt-9", input_tokens=1))
    assert no_model.value.status == 400
    with pytest.raises(UnknownPrice):
        pricing.charge("image", dalle("512x512", "standard"))
    with pytest.raises(UnknownFeature) as no_feature:
        pricing.charge("teleport", Usage())
    assert "chat" in no_feature.value.detail


def test_the_data_files_validate_and_name_their_versions() -> None:
    assert load_prices().version
    assert load_features().version
    assert {"chat", "embedding", "image", "color_analysis"} <= set(load_features().features)
    assert {"mock/chat", "mock/embed", "mock/image", "openai/dall-e-3"} <= set(load_prices().models)


def test_a_malformed_feature_file_is_refused() -> None:
    # Given a flat feature that also claims a markup, then the catalog does not load
    with pytest.raises(ValidationError):
        FeatureCatalog.model_validate(
            {
                "version": "x",
                "conversion": {"micro_usd_per_credit": 10_000},
                "features": {"bad": {"name": "bad", "rule": "flat", "credits": 1, "markup_bp": 20_000}},
            }
        )
    with pytest.raises(ValidationError):  # floats are not money
        FeatureCatalog.model_validate(
            {"version": "x", "conversion": {"micro_usd_per_credit": 0.5}, "features": {}}
        )
