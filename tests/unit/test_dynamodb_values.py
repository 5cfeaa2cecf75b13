"""Tollgate's own DynamoDB attribute values: the same wire format as boto3's TypeSerializer
(which tests may use to check it), faster, and no floats."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from tollgate.aws.dynamodb import deserialize, from_attribute, serialize, to_attribute

VALUES: list[Any] = [
    "text",
    "",
    "ünïcödé ✓",
    True,
    False,
    0,
    -12,
    10**30,
    Decimal("1.5"),
    Decimal("-0.0001"),
    None,
    b"\x00\x01bytes",
    {"nested": {"list": [1, "two", {"three": False}], "empty": {}}},
    [],
    ["a", 1, None, [True]],
    {"b", "a"},
    {3, 1, 2},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_are_written_as_boto3_writes_them(value: Any) -> None:
    ours, theirs = to_attribute(value), TypeSerializer().serialize(value)
    if "SS" in theirs or "NS" in theirs:  # a set's order is not part of its value
        (kind,) = theirs
        assert sorted(ours[kind]) == sorted(theirs[kind])
    else:
        assert ours == theirs


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_read_back_as_written(value: Any) -> None:
    back = from_attribute(to_attribute(value))
    assert back == value
    assert back == TypeDeserializer().deserialize(to_attribute(value))


def test_whole_numbers_read_back_as_int_and_fractions_as_decimal() -> None:
    item = deserialize(serialize({"n": 42, "big": 10**20, "f": Decimal("2.50"), "neg": -7}))
    assert item == {"n": 42, "big": 10**20, "f": Decimal("2.5"), "neg": -7}
    assert all(type(item[name]) is int for name in ("n", "big", "neg"))


def test_an_item_leaves_out_none_attributes() -> None:
    assert serialize({"pk": "a", "gone": None}) == {"pk": {"S": "a"}}


@pytest.mark.parametrize("value", [1.5, object(), set()], ids=["float", "object", "empty set"])
def test_what_dynamodb_cannot_hold_is_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        to_attribute(value)
