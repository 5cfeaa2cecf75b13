"""The package catalogue (data/packages.toml) and exact amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from tollgate.credits.amounts import credits_of_units, exact_json, units_of_credits, usd_of_micro
from tollgate.credits.packages import load_packages, parse_packages


def test_the_shipped_catalogue_is_valid_and_has_bonus_packages() -> None:
    # When the shipped data file is loaded
    catalogue = load_packages()
    # Then every package is priced in whole cents and at least one carries a bonus
    assert catalogue.names
    assert any(p.bonus_credits > 0 for p in catalogue.packages.values())
    for package in catalogue.packages.values():
        assert package.price_micro_usd == package.price_cents * 10_000
        assert package.total_credits == package.credits + package.bonus_credits


@pytest.mark.parametrize(
    "body",
    [
        'title = "x"\nprice_cents = 0\ncredits = 1',  # free is not a package
        'title = "x"\nprice_cents = 100\ncredits = -1',  # negative credits
        'title = "x"\nprice_cents = 1.5\ncredits = 1',  # a float price
        'title = "x"\nprice_cents = 100\ncredits = 1\nbonus = 5',  # an unknown field
        'title = "x"\nprice_cents = 100\ncredits = 1\ncurrency = "eur"',  # only USD
        "price_cents = 100\ncredits = 1",  # no title
    ],
)
def test_an_invalid_package_is_refused(body: str) -> None:
    # Given a catalogue with one bad entry, When it is parsed, Then it is refused whole
    with pytest.raises(ValidationError):
        parse_packages(f"[packages.bad]\n{body}\n")


def test_an_empty_catalogue_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_packages("")


@pytest.mark.parametrize(
    ("units", "text"),
    [
        (0, "0"),
        (1, "0.0001"),
        (10_000, "1"),
        (12_345, "1.2345"),
        (-5_000, "-0.5"),
        (10**15 + 1, "100000000000.0001"),
    ],
)
def test_credits_render_exactly(units: int, text: str) -> None:
    # Given integer units, Then the JSON number has the exact digits (no float on the way)
    assert exact_json(credits_of_units(units)) == text
    assert units_of_credits(Decimal(text)) == units


def test_usd_renders_with_up_to_six_decimals() -> None:
    assert exact_json({"usd": usd_of_micro(40_000)}) == '{"usd":0.04}'
    assert exact_json(usd_of_micro(1)) == "0.000001"
    assert exact_json(usd_of_micro(123_000_000)) == "123"


@pytest.mark.parametrize("value", [Decimal("0.00001"), Decimal("NaN"), Decimal("Infinity"), True])
def test_finer_than_a_unit_or_not_a_number_is_refused(value: Decimal) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the reason
        units_of_credits(value)


def test_floats_are_never_written() -> None:
    with pytest.raises(TypeError):
        exact_json({"balance": 0.1})


def test_no_package_sells_credits_below_the_usage_conversion_rate() -> None:
    # Given the rate at which features convert provider cost into credits
    from tollgate.metering.pricing import load_features

    micro_usd_per_credit = load_features().conversion.micro_usd_per_credit
    # Then every package's paid credits cost at least that much (bonuses are the discount)
    for package in load_packages().packages.values():
        assert package.price_micro_usd * 10_000 >= package.credits * micro_usd_per_credit, package.name
