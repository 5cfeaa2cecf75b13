"""The starter templates shipped in data/templates: every file validates as the API validates a
template, and the two the product leans on (a product description, a listing photo) say what
they must."""

from __future__ import annotations

from importlib import resources

import pytest

from tollgate.errors import ValidationFailed
from tollgate.generation.registry import load_models
from tollgate.metering.pricing import load_features
from tollgate.templates.starter import InvalidStarter, load_starters, parse_starter
from tollgate.templates.variables import validate_values

FOLDER = resources.files("tollgate").joinpath("data/templates")


def test_every_shipped_file_is_a_valid_starter_with_a_unique_id() -> None:
    files = sorted(entry.name for entry in FOLDER.iterdir() if entry.name.endswith(".toml"))
    starters = load_starters()
    assert [s.source.rsplit("/", 1)[-1] for s in starters] == files
    assert len({s.template_id for s in starters}) == len(starters)
    assert {s.definition.kind for s in starters} == {"text", "image"}


def test_the_product_description_renders_from_a_name_and_features_at_a_flat_price() -> None:
    found = next(s for s in load_starters() if s.template_id == "tpl_starter-product-description")
    definition = found.definition
    values = {"product_name": "Stoneware mug", "features": ["350 ml", "dishwasher safe"]}
    prompt = definition.parsed.render(validate_values(definition.variables, values))
    assert 'for "Stoneware mug"' in prompt
    assert "Key features: 350 ml; dishwasher safe." in prompt
    assert "at most 80 words" in prompt  # the default
    assert definition.price is not None
    assert (definition.feature, definition.price.rule, definition.price.credits) == (
        "product_description",
        "flat",
        2_000,
    )


def test_the_listing_photo_is_an_image_built_from_title_property_type_and_location() -> None:
    found = next(s for s in load_starters() if s.template_id == "tpl_starter-listing-photo")
    definition = found.definition
    assert definition.kind == "image"
    assert {v.name for v in definition.variables} == {"title", "property_type", "location"}
    assert definition.params.model == "default-image"
    context = {"title": "Sunny loft near the canal", "property_type": "loft", "location": "Le Marais, Paris"}
    prompt = definition.parsed.render(validate_values(definition.variables, context))
    assert prompt.startswith("A bright, professional real-estate listing photo of a loft in Le Marais, Paris")
    assert '"Sunny loft near the canal"' in prompt
    with pytest.raises(ValidationFailed) as caught:
        validate_values(definition.variables, {**context, "property_type": "castle"})
    assert [e.field for e in caught.value.errors] == ["variables.property_type"]


GOOD = """
id = "tpl_starter-test"
name = "Test"
body = "Hello {{ who }}"
[[variables]]
name = "who"
"""


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("id = ", "not TOML"),
        (GOOD + 'colour = "red"\n', "colour"),
        (GOOD.replace("{{ who }}", "{{ who"), "unclosed placeholder"),
        (GOOD.replace("{{ who }}", "{{ whom }}"), "whom"),
        (GOOD.replace("tpl_starter-test", "tpl_test"), "starts with"),
        (GOOD + '[params]\nmodel = "mock/image"\n', "serves image requests"),
    ],
)
def test_a_broken_starter_is_refused_naming_its_file(text: str, says: str) -> None:
    with pytest.raises(InvalidStarter) as caught:
        parse_starter(text, "data/templates/broken.toml", load_models(), load_features())
    assert "data/templates/broken.toml" in str(caught.value)
    assert says in str(caught.value)


def test_a_good_starter_parses() -> None:
    parsed = parse_starter(GOOD, "x.toml", load_models(), load_features())
    assert (parsed.template_id, parsed.definition.name) == ("tpl_starter-test", "Test")
