"""The model registry (data/models.toml): validation, prices kept in step, alias resolution."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tollgate.errors import ValidationFailed
from tollgate.generation.registry import ModelRegistry, load_models, parse_size, registry_from_toml
from tollgate.metering.pricing import load_prices
from tollgate.providers.errors import ProviderNotConfigured
from tollgate.tokens import SHIPPED_ENCODINGS

ALL = {"openai", "anthropic", "gemini", "stability", "ollama", "mock"}


def test_the_shipped_registry_is_valid_and_covers_every_provider() -> None:
    registry = load_models()
    assert {spec.provider for spec in registry.models.values()} == ALL
    assert {"mock/chat", "mock/embed", "mock/image"} <= set(registry.models)
    assert "fast-chat" in registry.aliases


def test_every_model_has_a_price_under_the_same_name() -> None:
    # Prices live in data/prices.toml only; a model without one could never be charged.
    prices = load_prices()
    missing = sorted(name for name in load_models().models if name not in prices.models)
    assert missing == []


def test_every_image_size_offered_has_a_standard_price() -> None:
    prices = load_prices()
    for spec in load_models().listed("image"):
        for size in spec.sizes:
            assert "standard" in prices.models[spec.name].images.get(size, {}), (spec.name, size)


def test_encodings_are_the_shipped_ones() -> None:
    assert {spec.encoding for spec in load_models().models.values()} <= set(SHIPPED_ENCODINGS)


def test_model_ids_and_defaults() -> None:
    registry = load_models()
    assert registry.get("openai/gpt-4o-mini").model_id == "gpt-4o-mini"
    assert registry.get("mock/image").default_size == "1024x1024"
    assert registry.get("mock/chat").deterministic
    assert registry.get("openai/text-embedding-3-small").dimensions == 1536


def test_an_unknown_model_is_a_422_on_the_model_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        load_models().get("openai/gpt-9")
    assert caught.value.status == 422
    assert caught.value.errors[0].field == "model"


def test_an_alias_resolves_to_its_configured_chain_in_order() -> None:
    chain = load_models().resolve("fast-chat", configured={"anthropic", "mock"}, kind="chat")
    assert chain.alias == "fast-chat"
    assert [spec.name for spec in chain.models] == ["anthropic/claude-3-5-haiku-20241022", "mock/chat"]
    assert chain.skipped == ("openai/gpt-4o-mini", "gemini/gemini-1.5-flash")
    assert chain.kind == "chat"


def test_a_model_resolves_to_itself() -> None:
    chain = load_models().resolve("mock/embed", configured=ALL, kind="embedding")
    assert chain.alias is None
    assert [spec.name for spec in chain.models] == ["mock/embed"]


def test_a_model_of_another_kind_is_refused() -> None:
    with pytest.raises(ValidationFailed) as caught:
        load_models().resolve("mock/embed", configured=ALL, kind="chat")
    assert caught.value.errors[0].message == "'mock/embed' serves embedding requests, not chat"


def test_nothing_configured_is_provider_not_configured() -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        load_models().resolve("openai/gpt-4o", configured={"mock"})
    assert caught.value.status == 503
    with pytest.raises(ProviderNotConfigured, match="default-embedding"):
        load_models().resolve("default-embedding", configured={"mock"})


def test_listing_by_kind_is_sorted() -> None:
    names = [spec.name for spec in load_models().listed("embedding")]
    assert names == sorted(names)
    assert "mock/embed" in names
    assert "mock/chat" not in names


MINIMAL = """
[models."mock/chat"]
provider = "mock"
kind = "chat"
context_window = 1000
max_output_tokens = 100
"""


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (MINIMAL.replace('provider = "mock"', 'provider = "openai"'), "differs from the name's prefix"),
        (MINIMAL.replace("mock", "midjourney"), "unknown provider"),
        (MINIMAL.replace("max_output_tokens = 100", ""), "needs max_output_tokens"),
        (
            MINIMAL.replace('kind = "chat"', 'kind = "image"').replace("max_output_tokens = 100", ""),
            "needs sizes",
        ),
        (MINIMAL + "price = 3\n", "Extra inputs are not permitted"),
        (MINIMAL.replace("context_window = 1000", "context_window = 0"), "greater than 0"),
        (MINIMAL + 'encoding = "p50k_base"\n', "encoding"),
        (MINIMAL + '[aliases.fast]\nchain = ["mock/nope"]\n', "unknown models"),
        (MINIMAL + '[aliases."mock/chat"]\nchain = ["mock/chat"]\n', "alias"),
        (MINIMAL + "[aliases.empty]\nchain = []\n", "at least 1"),
    ],
)
def test_a_bad_registry_is_refused(toml: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        registry_from_toml(toml)


def test_stability_serves_images_only() -> None:
    toml = MINIMAL.replace("mock/chat", "stability/sd3").replace(
        'provider = "mock"', 'provider = "stability"'
    )
    with pytest.raises(ValidationError, match="stability serves no chat models"):
        registry_from_toml(toml)


def test_an_alias_may_not_mix_kinds_and_an_embedding_alias_names_one_model() -> None:
    models = {
        "mock/chat": {
            "name": "mock/chat",
            "provider": "mock",
            "kind": "chat",
            "context_window": 1,
            "max_output_tokens": 1,
        },
        "mock/embed": {
            "name": "mock/embed",
            "provider": "mock",
            "kind": "embedding",
            "context_window": 1,
            "dimensions": 8,
        },
        "openai/e": {
            "name": "openai/e",
            "provider": "openai",
            "kind": "embedding",
            "context_window": 1,
            "dimensions": 8,
        },
    }
    with pytest.raises(ValidationError, match="mixes kinds"):
        ModelRegistry.model_validate(
            {"models": models, "aliases": {"x": {"name": "x", "chain": ["mock/chat", "mock/embed"]}}}
        )
    with pytest.raises(ValidationError, match="exactly one model"):
        ModelRegistry.model_validate(
            {"models": models, "aliases": {"e": {"name": "e", "chain": ["openai/e", "mock/embed"]}}}
        )


def test_sizes_parse() -> None:
    assert parse_size("1792x1024") == (1792, 1024)
    for bad in ("1024", "0x10", "10x", "axb", "1024X1024"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)
