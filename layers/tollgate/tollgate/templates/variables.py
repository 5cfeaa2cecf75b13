"""A template's declared variables, and the values a request gives them (S8).

Each variable has a type (``string``, ``number``, ``enum`` or ``list``), is required or has a
default (or is optional and renders empty), and may bound its length: ``max_length`` is the
characters of a string, of each item of a list, or of a number as written; ``max_items`` the
items of a list. Values are validated with a pydantic model built from the declarations:
every problem (missing, unknown, ill-typed, too long) is one ``FieldError`` on
``variables.<name>``, all in one ``ValidationFailed`` (422).

Values render as text: strings and enum values as they are, numbers canonically and exactly
(``Decimal`` in, its digits out, never through a float, no exponent), lists joined by the
variable's ``join`` (``", "`` by default). Rendering never interprets a value
(``tollgate.templates.syntax``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    model_validator,
)

from tollgate.errors import FieldError, ValidationFailed
from tollgate.templates.syntax import NAME_PATTERN

VariableType = Literal["string", "number", "enum", "list"]
MAX_VARIABLES = 50
MAX_NUMBER_DIGITS = 40
"""Significant digits a number may have (and how far its point may move): renders exactly."""
MAX_VALUE_CHARS = 100_000
"""The longest text one value may render to, whatever its declaration says."""
MAX_ENUM_VALUES = 100
MAX_LIST_ITEMS = 1_000


def exact_number(value: Any) -> Decimal:
    """A JSON number as an exact ``Decimal``. ``int`` and ``Decimal`` are taken as they are; a
    ``float`` (a body parsed without exact numbers) by its shortest repr, which gives back the
    digits that were sent for any number of up to 15 significant digits. Booleans, strings,
    NaN and infinities are refused, as are numbers too long to write out exactly."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise ValueError("must be a finite number")
    digits = number.as_tuple().digits
    if len(digits) > MAX_NUMBER_DIGITS or abs(number.adjusted()) > MAX_NUMBER_DIGITS:
        raise ValueError(f"must have at most {MAX_NUMBER_DIGITS} digits")
    return number


def number_text(number: Decimal) -> str:
    """A number written exactly, without an exponent: ``1E+2`` -> ``100``, ``1.50`` -> ``1.50``."""
    return format(number.copy_abs() if number.is_zero() else number, "f")


ExactNumber = Annotated[Decimal, BeforeValidator(exact_number)]
Text = Annotated[str, Field(max_length=MAX_VALUE_CHARS)]


class VariableSpec(BaseModel):
    """One declared variable of a template."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(pattern=f"^{NAME_PATTERN}$")
    type: VariableType = "string"
    description: str = Field("", max_length=500)
    required: bool | None = None
    """Required unless it has a default; an optional variable without one renders empty."""
    default: Text | ExactNumber | tuple[Text, ...] | None = None
    max_length: int | None = Field(None, ge=1, le=MAX_VALUE_CHARS)
    values: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = Field(
        (), max_length=MAX_ENUM_VALUES, strict=False
    )
    """The allowed values of an ``enum``."""
    max_items: int | None = Field(None, ge=1, le=MAX_LIST_ITEMS)
    join: str = Field(", ", max_length=20)
    """What a ``list`` is joined with when it renders."""
    minimum: ExactNumber | None = None
    maximum: ExactNumber | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_by_type(cls, raw: Any) -> Any:
        # The default's type follows the variable's: a list default arrives as a JSON array, a
        # number as a number; a string default is never read as a number.
        if isinstance(raw, Mapping) and "default" in raw and raw.get("default") is not None:
            kind = raw.get("type", "string")
            default = raw["default"]
            if kind == "list" and isinstance(default, list):
                return {**raw, "default": tuple(default)}
            if kind in ("string", "enum") and not isinstance(default, str):
                raise ValueError(f"variable {raw.get('name')!r}: the default of a {kind} must be a string")
            if kind == "number":
                return {**raw, "default": exact_number(default)}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> VariableSpec:
        what = f"variable {self.name!r}"
        if self.required and self.default is not None:
            raise ValueError(f"{what}: a required variable cannot have a default")
        if self.type == "enum":
            if not self.values:
                raise ValueError(f"{what}: an enum needs its values")
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"{what}: an enum value is listed twice")
        elif self.values:
            raise ValueError(f"{what}: values are for enums")
        if self.type != "list" and (self.max_items is not None or self.join != ", "):
            raise ValueError(f"{what}: max_items and join are for lists")
        if self.type != "number" and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"{what}: minimum and maximum are for numbers")
        if self.type == "enum" and self.max_length is not None:
            raise ValueError(f"{what}: an enum is bounded by its values, not max_length")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"{what}: minimum is above maximum")
        if self.default is not None:
            try:
                default = list(self.default) if isinstance(self.default, tuple) else self.default
                _value_model((self,)).model_validate({self.name: default})
            except ValidationError as exc:
                reason = "; ".join(str(e.get("msg")) for e in exc.errors())
                raise ValueError(f"{what}: the default is not a valid value ({reason})") from None
        return self

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None

    def text_of(self, value: Any) -> str:
        """The text a validated value renders as."""
        if value is None:
            return ""
        if self.type == "number":
            return number_text(value)
        if self.type == "list":
            return self.join.join(value)
        return str(value)


def _within(spec: VariableSpec) -> AfterValidator:
    def check(number: Decimal) -> Decimal:
        if spec.minimum is not None and number < spec.minimum:
            raise ValueError(f"must be at least {number_text(spec.minimum)}")
        if spec.maximum is not None and number > spec.maximum:
            raise ValueError(f"must be at most {number_text(spec.maximum)}")
        if spec.max_length is not None and len(number_text(number)) > spec.max_length:
            raise ValueError(f"must be written in at most {spec.max_length} characters")
        return number

    return AfterValidator(check)


def _annotation(spec: VariableSpec) -> Any:
    if spec.type == "string":
        return Annotated[str, StringConstraints(strict=True, max_length=spec.max_length or MAX_VALUE_CHARS)]
    if spec.type == "number":
        return Annotated[Decimal, BeforeValidator(exact_number), _within(spec)]
    if spec.type == "enum":
        return cast(Any, Literal).__getitem__(spec.values)
    item = Annotated[str, StringConstraints(strict=True, max_length=spec.max_length or MAX_VALUE_CHARS)]
    return Annotated[list[item], Field(strict=True, max_length=spec.max_items or MAX_LIST_ITEMS)]


@lru_cache(maxsize=512)
def _value_model(specs: tuple[VariableSpec, ...]) -> type[BaseModel]:
    """The pydantic model of a set of declarations (cached: versions are immutable). Fields are
    named ``v<i>`` and aliased to the variable's name, so that a variable may be called ``json``
    or ``copy`` without shadowing pydantic's own attributes."""
    fields: dict[str, Any] = {}
    for index, spec in enumerate(specs):
        annotation = _annotation(spec)
        if spec.is_required:
            fields[f"v{index}"] = (annotation, Field(alias=spec.name))
        else:
            fields[f"v{index}"] = (annotation | None, Field(spec.default, alias=spec.name))
    return create_model("TemplateVariables", __config__=ConfigDict(extra="forbid", frozen=True), **fields)


_MESSAGES = {
    "missing": "Field required",
    "extra_forbidden": "Unknown variable: the template declares no variable of this name",
}


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in ("variables", *error.get("loc", ())))
        kind = str(error.get("type", "invalid"))
        message = _MESSAGES.get(kind) or str(error.get("msg", "Invalid value"))
        errors.append(FieldError(field=location, message=message.removeprefix("Value error, "), kind=kind))
    return errors


def validate_values(specs: Sequence[VariableSpec], values: Mapping[str, Any] | None) -> dict[str, str]:
    """The text of every declared variable for ``values`` (defaults applied).

    Raises ``ValidationFailed`` with one ``FieldError`` per problem: a missing required
    variable, an unknown one, a value of the wrong type, too long or out of bounds."""
    model = _value_model(tuple(specs))
    raw = dict(values or {})
    if not all(isinstance(name, str) for name in raw):
        raise ValidationFailed([FieldError("variables", "Variable names must be strings")])
    try:
        validated = model.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(_field_errors(exc)) from None
    return {spec.name: spec.text_of(getattr(validated, f"v{index}")) for index, spec in enumerate(specs)}


__all__ = [
    "MAX_VARIABLES",
    "ExactNumber",
    "VariableSpec",
    "VariableType",
    "exact_number",
    "number_text",
    "validate_values",
]
