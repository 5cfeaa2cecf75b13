"""Declared variables and the values a request gives them: every problem named on its field,
numbers written exactly, lists joined, defaults applied; and the checks a definition passes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tollgate.errors import ValidationFailed
from tollgate.generation.registry import load_models
from tollgate.metering.models import Usage
from tollgate.metering.pricing import default_pricing, load_features
from tollgate.templates.models import (
    TemplateDefinition,
    TemplatePrice,
    definition_from_json,
    definition_problems,
    definition_to_json,
)
from tollgate.templates.variables import VariableSpec, validate_values


def spec(**fields: Any) -> VariableSpec:
    return VariableSpec.model_validate(fields)


def errors_of(specs: list[VariableSpec], values: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        validate_values(specs, values)
    assert caught.value.status == 422
    return {error.field: error.message for error in caught.value.errors}


def test_missing_unknown_and_ill_typed_variables_are_each_named_in_one_422() -> None:
    # Given a string, a number, an enum and a list, all required
    specs = [
        spec(name="title", max_length=10),
        spec(name="count", type="number"),
        spec(name="tone", type="enum", values=["calm", "bold"]),
        spec(name="tags", type="list"),
    ]
    # When the title is missing, the count is text, the tone is not a value, and one is unknown
    errors = errors_of(specs, {"count": "5", "tone": "loud", "tags": ["a"], "colour": "red"})
    # Then each of them is named on its own field
    assert set(errors) == {"variables.title", "variables.count", "variables.tone", "variables.colour"}
    assert errors["variables.title"] == "Field required"
    assert errors["variables.count"] == "must be a number"
    assert "'calm' or 'bold'" in errors["variables.tone"]
    assert errors["variables.colour"].startswith("Unknown variable")


def test_a_string_at_its_max_length_passes_and_one_character_more_is_refused() -> None:
    specs = [spec(name="title", max_length=5)]
    assert validate_values(specs, {"title": "héllo"}) == {"title": "héllo"}
    assert "at most 5 characters" in errors_of(specs, {"title": "héllo!"})["variables.title"]


@pytest.mark.parametrize("value", [5, True, None, ["a"], {"a": 1}])
def test_a_string_variable_takes_only_text(value: Any) -> None:
    assert "variables.title" in errors_of([spec(name="title")], {"title": value})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3"),
        (Decimal("1.50"), "1.50"),
        (Decimal("1E+2"), "100"),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (Decimal("-0"), "0"),
        (Decimal("0.000001"), "0.000001"),
        (0.1, "0.1"),
        (1e16, "10000000000000000"),
    ],
)
def test_numbers_render_exactly_without_float_surprises(value: Any, text: str) -> None:
    assert validate_values([spec(name="n", type="number")], {"n": value}) == {"n": text}


@pytest.mark.parametrize(
    "value", [True, "5", Decimal("NaN"), Decimal("Infinity"), float("inf"), Decimal("1E+999999"), 10**50]
)
def test_what_is_not_a_finite_writable_number_is_refused(value: Any) -> None:
    assert "variables.n" in errors_of([spec(name="n", type="number")], {"n": value})


def test_number_bounds_and_written_length() -> None:
    specs = [spec(name="n", type="number", minimum=1, maximum=Decimal("9.5"), max_length=3)]
    assert validate_values(specs, {"n": Decimal("9.5")}) == {"n": "9.5"}
    assert "at least 1" in errors_of(specs, {"n": 0})["variables.n"]
    assert "at most 9.5" in errors_of(specs, {"n": 10})["variables.n"]
    assert "3 characters" in errors_of(specs, {"n": Decimal("1.25")})["variables.n"]


def test_lists_join_and_bound_their_items() -> None:
    specs = [spec(name="tags", type="list", max_items=3, max_length=4, join=" | ")]
    assert validate_values(specs, {"tags": ["a", "bb", "ccc"]}) == {"tags": "a | bb | ccc"}
    assert "at most 3 items" in errors_of(specs, {"tags": ["a", "b", "c", "d"]})["variables.tags"]
    assert "at most 4 characters" in errors_of(specs, {"tags": ["abcde"]})["variables.tags.0"]
    assert "variables.tags.1" in errors_of(specs, {"tags": ["a", 2]})
    assert "variables.tags" in errors_of(specs, {"tags": "a, b"})


def test_defaults_apply_and_an_optional_variable_without_one_renders_empty() -> None:
    specs = [
        spec(name="tone", type="enum", values=["calm", "bold"], default="calm"),
        spec(name="words", type="number", default=Decimal("80")),
        spec(name="tags", type="list", default=["x", "y"]),
        spec(name="note", required=False),
    ]
    assert validate_values(specs, None) == {"tone": "calm", "words": "80", "tags": "x, y", "note": ""}
    assert validate_values(specs, {"tone": "bold", "note": None})["tone"] == "bold"


def test_variables_may_be_named_like_pydantic_attributes() -> None:
    specs = [spec(name="json"), spec(name="model_config"), spec(name="copy", type="number")]
    values = {"json": "j", "model_config": "m", "copy": 2}
    assert validate_values(specs, values) == {"json": "j", "model_config": "m", "copy": "2"}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": "a", "required": True, "default": "x"}, "cannot have a default"),
        ({"name": "a", "type": "enum"}, "needs its values"),
        ({"name": "a", "type": "enum", "values": ["x", "x"]}, "twice"),
        ({"name": "a", "type": "enum", "values": ["x"], "default": "y"}, "default is not a valid value"),
        ({"name": "a", "max_length": 2, "default": "long"}, "default is not a valid value"),
        ({"name": "a", "type": "number", "default": "5"}, "must be a number"),
        ({"name": "a", "type": "string", "default": 5}, "must be a string"),
        ({"name": "a", "values": ["x"]}, "values are for enums"),
        ({"name": "a", "type": "number", "minimum": 5, "maximum": 1}, "minimum is above maximum"),
        ({"name": "2a"}, "pattern"),
    ],
)
def test_a_declaration_that_makes_no_sense_is_refused(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        VariableSpec.model_validate(fields)


# -- definitions ---------------------------------------------------------------------------------


def definition(**fields: Any) -> TemplateDefinition:
    return TemplateDefinition.model_validate({"name": "T", "body": "Hi {{ who }}", **fields})


def problems_of(defn: TemplateDefinition) -> dict[str, str]:
    return {p.field: p.message for p in definition_problems(defn, load_models(), load_features())}


def test_a_sound_definition_has_no_problems() -> None:
    defn = definition(variables=[{"name": "who"}], params={"model": "mock/chat", "max_tokens": 20})
    assert problems_of(defn) == {}


def test_a_definition_names_each_problem_on_its_field() -> None:
    # Given placeholders without declarations, a variable declared twice, image parameters on a
    # text template, and an unknown feature
    defn = definition(
        body="{{ who }} {{ where }} {{ who }}",
        variables=[{"name": "who"}, {"name": "who"}],
        params={"size": "1024x1024"},
        feature="no_such_feature",
    )
    problems = problems_of(defn)
    assert "where" in problems["body"]
    assert "declared twice" in problems["variables.1.name"]
    assert "not a parameter of text templates" in problems["params.size"]
    assert "unknown feature" in problems["feature"]


def test_a_malformed_body_is_refused_with_the_position() -> None:
    defn = definition(body="line one\n  {{ bad name }}", variables=[])
    assert "line 2, column 3" in problems_of(defn)["body"]


@pytest.mark.parametrize(
    ("kind", "model", "says"),
    [
        ("text", "mock/image", "serves image requests, not chat"),
        ("image", "mock/chat", "serves chat requests, not image"),
        ("text", "nobody/none", "unknown model"),
    ],
)
def test_the_default_model_must_exist_and_be_of_the_templates_kind(kind: str, model: str, says: str) -> None:
    assert (
        says
        in problems_of(definition(kind=kind, variables=[{"name": "who"}], params={"model": model}))[
            "params.model"
        ]
    )


def test_an_alias_is_a_valid_default_model() -> None:
    assert problems_of(definition(variables=[{"name": "who"}], params={"model": "fast-chat"})) == {}


def test_a_price_cannot_take_the_name_of_a_catalog_feature() -> None:
    defn = definition(variables=[{"name": "who"}], feature="chat", price={"rule": "flat", "credits": 100})
    assert "priced by the feature catalog" in problems_of(defn)["feature"]


def test_a_catalog_feature_of_another_kind_is_refused() -> None:
    defn = definition(variables=[{"name": "who"}], feature="embedding")
    assert "embedding" in problems_of(defn)["feature"]


def test_a_declared_price_is_the_rule_the_ledger_prices_with() -> None:
    # Given a flat and a cost-plus price
    flat = TemplatePrice(rule="flat", credits=2_000).rule_for("product_description", "text")
    plus = TemplatePrice(rule="cost_plus", markup_bp=20_000, minimum_credits=3).rule_for("tpl_x", "image")
    usage = Usage(provider="mock", model="chat", input_tokens=1_000, output_tokens=500)
    # Then pricing charges exactly that: 2,000 units flat, and cost x 2 (at least 3 units)
    pricing = default_pricing()
    assert pricing.charge(flat, usage).credits == 2_000
    cost = pricing.prices.cost_micro_usd(usage)  # 1,000 x 0.1 + 500 x 0.2 = 200 micro-USD
    assert cost == 200
    # 200 micro-USD x 2 = 400 micro-USD = 0.04 credit at $0.01 a credit = 400 units
    assert pricing.charge(plus, usage).credits == 400
    assert (flat.kind, plus.kind) == ("text", "image")


def test_a_stored_definition_reads_back_the_same_digits() -> None:
    # Given a definition whose defaults are exact decimals and a temperature
    defn = definition(
        body="{{ who }} {{ n }}",
        variables=[
            {"name": "who", "default": "x"},
            {"name": "n", "type": "number", "default": Decimal("1.50")},
        ],
        params={"model": "mock/chat", "temperature": 0.7},
    )
    # When it is stored as JSON and read back
    again = definition_from_json(definition_to_json(defn))
    # Then it is the same, and renders the same
    assert again == defn
    assert again.parsed.render(validate_values(again.variables, {})) == "x 1.50"
