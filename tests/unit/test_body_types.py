"""Request bodies are validated strictly (S11): a JSON boolean only where a boolean is declared,
a number (not a boolean, not a numeric string) where a number is, a string where a string is;
``Literal`` values and ISO datetimes still arrive as strings, fractions of an exact-numbers body
as ``Decimal`` (``RouteSpec.parse_body``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import pytest

from tollgate.api.params import Body, RouteSpec
from tollgate.api.schemas.accounts import CreateKeyRequest
from tollgate.api.schemas.credits import GrantRequest, PaymentEvent
from tollgate.errors import ValidationFailed
from tollgate.generation.requests import ChatCompletionRequest, GenerateRequest


def _chat(body: Annotated[ChatCompletionRequest, Body()]) -> None: ...


def _generate(body: Annotated[GenerateRequest, Body(exact_numbers=True)]) -> None: ...


def _grant(body: Annotated[GrantRequest, Body()]) -> None: ...


def _create_key(body: Annotated[CreateKeyRequest, Body()]) -> None: ...


CHAT = RouteSpec.of("POST", "/v1/chat/completions", _chat)
GENERATE = RouteSpec.of("POST", "/v1/generate", _generate)
GRANT = RouteSpec.of("POST", "/v1/orgs/{org_id}/credits/grants", _grant)
CREATE_KEY = RouteSpec.of("POST", "/v1/orgs/{org_id}/keys", _create_key)
MESSAGES = [{"role": "user", "content": "hi"}]


def refused_fields(spec: RouteSpec, body: dict[str, Any], *, decimal_numbers: bool = False) -> list[str]:
    with pytest.raises(ValidationFailed) as refused:
        spec.parse_body(json.dumps(body), decimal_numbers=decimal_numbers)
    return [error.field for error in refused.value.errors]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"stream": 0}, "stream"),
        ({"temperature": False}, "temperature"),
        ({"temperature": "0.5"}, "temperature"),
        ({"seed": False}, "seed"),
        ({"seed": "7"}, "seed"),
        ({"max_tokens": 10.0}, "max_tokens"),
        ({"cache": {"skip": 0}}, "cache.skip"),
        ({"cache": {"skip": "true"}}, "cache.skip"),
        ({"cache": {"ttl": True}}, "cache.ttl"),
        ({"user": 5}, "user"),
    ],
)
def test_a_wrong_json_type_is_422_naming_the_field(extra: dict[str, Any], field: str) -> None:
    assert refused_fields(CHAT, {"model": "m", "messages": MESSAGES, **extra}) == [field]


def test_one_error_per_ill_typed_field() -> None:
    body = {"model": "m", "messages": MESSAGES, "stream": 0, "temperature": False, "n": "1"}
    assert sorted(refused_fields(CHAT, body)) == ["n", "stream", "temperature"]


def test_right_types_pass_literal_strings_included() -> None:
    text = json.dumps({"model": "m", "messages": MESSAGES, "temperature": 1, "top_p": 0.5, "stream": False})
    parsed = CHAT.parse_body(text, decimal_numbers=False)
    assert isinstance(parsed, ChatCompletionRequest)
    assert (parsed.temperature, parsed.top_p, parsed.stream, parsed.messages[0].role) == (
        1,
        0.5,
        False,
        "user",
    )


def test_a_literal_and_an_iso_datetime_arrive_as_strings() -> None:
    text = json.dumps({"name": "ci", "user": "bot", "role": "owner", "expires_at": "2099-01-02T03:04:05Z"})
    parsed = CREATE_KEY.parse_body(text, decimal_numbers=False)
    assert isinstance(parsed, CreateKeyRequest)
    assert (parsed.role, parsed.expires_at) == ("owner", datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert refused_fields(CREATE_KEY, {"name": "ci", "user": "bot", "expires_at": 4_070_908_800}) == [
        "expires_at"
    ]


def test_an_exact_numbers_body_keeps_decimals_and_iso_datetimes() -> None:
    # Read in Python mode (fractions as Decimal): a fractional amount, a Literal and an ISO time
    text = '{"amount": 12.3456, "kind": "promo", "note": "n", "expires_at": "2099-01-01T00:00:00+02:00"}'
    parsed = GRANT.parse_body(text, decimal_numbers=True)
    assert isinstance(parsed, GrantRequest)
    assert (parsed.amount, parsed.kind) == (123_456, "promo")
    assert parsed.expires_at == datetime(2098, 12, 31, 22, tzinfo=UTC)
    assert refused_fields(GRANT, {"amount": 5, "note": "n", "expires_at": "2099-01-01"}, decimal_numbers=True)
    assert refused_fields(GRANT, {"amount": "5", "note": "n"}, decimal_numbers=True) == ["amount"]
    assert refused_fields(GRANT, {"amount": 5, "note": True}, decimal_numbers=True) == ["note"]


def test_an_exact_numbers_body_is_as_strict_and_keeps_free_form_values() -> None:
    text = '{"template_id": "t", "variables": {"price": 1.50, "on": true}, "params": {"temperature": 0.7}}'
    parsed = GENERATE.parse_body(text, decimal_numbers=True)
    assert isinstance(parsed, GenerateRequest)
    assert parsed.variables == {"price": Decimal("1.50"), "on": True}
    assert parsed.params.temperature == pytest.approx(0.7)
    body = {"template_id": "t", "params": {"temperature": False, "seed": "3"}, "cache": {"skip": 1}}
    assert sorted(refused_fields(GENERATE, body, decimal_numbers=True)) == [
        "cache.skip",
        "params.seed",
        "params.temperature",
    ]


def test_a_payment_event_is_as_strict() -> None:
    event = {"id": "evt_1", "type": "payment.succeeded", "org_id": "o", "purchase_id": "p"}
    assert PaymentEvent.parse(json.dumps({**event, "created": 1_700_000_000})).created == 1_700_000_000
    with pytest.raises(ValidationFailed) as refused:
        PaymentEvent.parse(json.dumps({**event, "created": "1700000000"}))
    assert [error.field for error in refused.value.errors] == ["created"]
