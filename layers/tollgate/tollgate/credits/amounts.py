"""Amounts at the API boundary: integers inside, exact decimals outside (S4).

Credits are kept in integer units of 1/10,000 credit and USD in integer micro-USD. The API
shows both as JSON *numbers* with at most 4 and 6 decimals. Converting goes through
``Decimal`` only (never ``float``), and ``exact_json`` writes a ``Decimal`` as the number it
is, which neither ``json`` nor pydantic do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from tollgate.clock import iso
from tollgate.units import CREDIT_UNITS, MICRO_USD

CREDIT_DECIMALS = 4
USD_DECIMALS = 6
MICRO_USD_PER_CENT = MICRO_USD // 100
if 10**CREDIT_DECIMALS != CREDIT_UNITS or 10**USD_DECIMALS != MICRO_USD:  # pragma: no cover
    raise RuntimeError("the decimals shown must be exactly the resolution of the integers kept")


def credits_of_units(units: int) -> Decimal:
    """``12345`` units -> ``Decimal('1.2345')`` credits, exactly."""
    return Decimal(units).scaleb(-CREDIT_DECIMALS)


def usd_of_micro(micro_usd: int) -> Decimal:
    """``40000`` micro-USD -> ``Decimal('0.04')`` USD, exactly."""
    return Decimal(micro_usd).scaleb(-USD_DECIMALS)


def units_of_credits(amount: Decimal | int) -> int:
    """Credits with at most 4 decimals -> integer units; ``ValueError`` for anything finer."""
    if isinstance(amount, bool):
        raise ValueError("must be a number")
    value = Decimal(amount)
    if not value.is_finite():
        raise ValueError("must be a finite number")
    units = value.scaleb(CREDIT_DECIMALS)
    if units != units.to_integral_value():
        raise ValueError(f"at most {CREDIT_DECIMALS} decimals")
    return int(units)


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError("an amount is not finite")
    text = format(value.normalize(), "f")
    return text if text not in ("-0",) else "0"


def client_json(value: Any) -> Any:
    """A client's free-form JSON (an image job's ``context``), echoed back: its fractions,
    parsed as ``float``, become the ``Decimal`` of their shortest repr, so ``exact_json``
    (which refuses floats, for money's sake) writes them as they were sent."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {key: client_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [client_json(item) for item in value]
    return value


def exact_json(value: Any) -> str:
    """Compact JSON in which a ``Decimal`` is a number with its exact digits.

    Also writes what a response model dumps in Python mode: datetimes (ISO 8601, UTC, ``Z``),
    dates, enums, tuples and mappings.
    """
    try:
        return _encode(value)
    except InvalidOperation as exc:  # pragma: no cover - normalize() of a finite Decimal
        raise ValueError(str(exc)) from exc


def _encode(value: Any) -> str:
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, Enum):
        return _encode(value.value)
    if isinstance(value, datetime):
        return json.dumps(iso(value))
    if isinstance(value, date):
        return json.dumps(value.isoformat())
    if isinstance(value, Mapping):
        parts = (f"{json.dumps(str(k), ensure_ascii=False)}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON (money must be Decimal, not float)")
