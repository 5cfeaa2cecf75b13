"""Bodies of the templates API (S8): definitions in and out, versions, pages, renderings, and
the template generation body is ``tollgate.api.schemas.template_generate`` (imported by the
generate function only).

A template's text is kept exactly as sent (nothing is stripped). Numbers are exact both ways:
bodies are read with ``Decimal`` fractions and answers write a ``Decimal`` with its digits
(``template_json_response``), so a default of ``1.50`` reads back as ``1.50``. A declared price
is given and shown in credits (at most 4 decimals) and as a markup multiplier (``1.5``), and is
kept in credit units and basis points.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from tollgate.api.rest import Response
from tollgate.api.schemas.common import ResponseModel
from tollgate.clock import iso
from tollgate.credits.amounts import credits_of_units, units_of_credits
from tollgate.templates.models import (
    MAX_PRICE_UNITS,
    Rendered,
    Template,
    TemplateDefinition,
    TemplatePage,
    TemplatePrice,
    TemplateVersion,
    Visibility,
)
from tollgate.units import BASIS_POINTS

MAX_PAGE = 100


class TemplateBody(BaseModel):
    """A request body of the templates API: unknown fields refused, text kept as sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _credit_units(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a JSON number of credits")
    try:
        units = units_of_credits(value)
    except ValueError as exc:
        raise ValueError(f"credits {exc}") from None
    if not 0 <= units <= MAX_PRICE_UNITS:
        raise ValueError(f"must be between 0 and {credits_of_units(MAX_PRICE_UNITS)} credits")
    return units


def _basis_points(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a JSON number (1.5 means provider cost x 1.5)")
    points = Decimal(value) * BASIS_POINTS
    if not points.is_finite() or points != points.to_integral_value():
        raise ValueError("at most 4 decimals")
    return int(points)


CreditUnits = Annotated[int, BeforeValidator(_credit_units)]
BasisPoints = Annotated[int, BeforeValidator(_basis_points)]


class PriceIn(TemplateBody):
    """A declared price: ``flat`` (``credits`` per call) or ``cost_plus`` (provider cost x
    ``markup``, at least ``minimum_credits``); ``cache_hit_credits`` prices a cache hit."""

    rule: Literal["flat", "cost_plus"]
    credits: CreditUnits = 0
    markup: BasisPoints = BASIS_POINTS
    minimum_credits: CreditUnits = 0
    cache_hit_credits: CreditUnits | None = None

    def fields(self) -> dict[str, Any]:
        """As ``TemplatePrice`` keeps it (units and basis points)."""
        return {
            "rule": self.rule,
            "credits": self.credits,
            "markup_bp": self.markup,
            "minimum_credits": self.minimum_credits,
            "cache_hit_credits": self.cache_hit_credits,
        }


class _DefinitionIn(TemplateBody):
    """A definition's fields as sent; ``tollgate.templates`` checks them and names each field
    at fault (``variables.0.max_length``, ``body`` with the position of a bad placeholder)."""

    name: Any = None
    description: Any = None
    category: Any = None
    kind: Any = None
    body: Any = None
    variables: Any = None
    params: Any = None
    feature: Any = None
    price: PriceIn | None = None

    def definition_fields(self) -> dict[str, Any]:
        """The definition's fields that were given (a ``null`` clears an optional one)."""
        given = {name: getattr(self, name) for name in self.model_fields_set if name in _DEFINITION_FIELDS}
        if "price" in given:
            given["price"] = self.price.fields() if self.price is not None else None
        return given


_DEFINITION_FIELDS = frozenset(_DefinitionIn.model_fields)


class TemplateIn(_DefinitionIn):
    """``POST /v1/templates``: a definition and, for the admin, ``visibility`` (an org's
    templates are private, the admin's public)."""

    visibility: Visibility | None = None


class TemplateUpdate(_DefinitionIn):
    """``PUT /v1/templates/{id}``: the fields to change (the others keep their value);
    ``base_version``, when given, must be the current version (else 409)."""

    base_version: int | None = Field(default=None, ge=1)


class RenderRequest(TemplateBody):
    """``POST /v1/templates/{id}/render``: the variables, and a version (default: the current)."""

    variables: dict[str, Any] | None = None
    version: int | None = Field(default=None, ge=1)


# -- answers -----------------------------------------------------------------------------------


def _price_out(price: TemplatePrice | None) -> dict[str, Any] | None:
    if price is None:
        return None
    out: dict[str, Any] = {"rule": price.rule}
    if price.rule == "flat":
        out["credits"] = credits_of_units(price.credits)
    else:
        out["markup"] = Decimal(price.markup_bp).scaleb(-4).normalize()
        out["minimum_credits"] = credits_of_units(price.minimum_credits)
    out["cache_hit_credits"] = (
        credits_of_units(price.cache_hit_credits) if price.cache_hit_credits is not None else None
    )
    return out


def _variables_out(definition: TemplateDefinition) -> list[dict[str, Any]]:
    found = []
    for spec in definition.variables:
        out: dict[str, Any] = {"name": spec.name, "type": spec.type, "required": spec.is_required}
        for name in (
            "description",
            "default",
            "max_length",
            "values",
            "max_items",
            "join",
            "minimum",
            "maximum",
        ):
            value = getattr(spec, name)
            if value is not None and value != () and not (name == "description" and value == ""):
                if name == "join" and spec.type != "list":
                    continue
                out[name] = list(value) if isinstance(value, tuple) else value
        found.append(out)
    return found


def _definition_out(definition: TemplateDefinition) -> dict[str, Any]:
    return {
        "name": definition.name,
        "description": definition.description,
        "category": definition.category,
        "kind": definition.kind,
        "body": definition.body,
        "variables": _variables_out(definition),
        "params": {
            k: list(v) if isinstance(v, tuple) else v for k, v in definition.params.set_fields().items()
        },
        "feature": definition.feature,
        "price": _price_out(definition.price),
    }


class TemplateOut(ResponseModel):
    """A template as it is now (its current version)."""

    id: str
    object: str = "template"
    visibility: Visibility
    org_id: str | None
    version: int
    name: str
    description: str
    category: str
    kind: str
    body: str
    variables: list[dict[str, Any]]
    params: dict[str, Any]
    feature: str | None
    price: dict[str, Any] | None
    usage_count: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, template: Template) -> TemplateOut:
        return cls(
            id=template.template_id,
            visibility=template.visibility,
            org_id=None if template.visibility == "public" else template.owner,
            version=template.version,
            usage_count=template.usage_count,
            created_at=template.created_at,
            created_by=template.created_by,
            updated_at=template.updated_at,
            updated_by=template.updated_by,
            **_definition_out(template.definition),
        )


class TemplateVersionOut(ResponseModel):
    """One immutable version of a template."""

    template_id: str
    object: str = "template.version"
    visibility: Visibility
    version: int
    name: str
    description: str
    category: str
    kind: str
    body: str
    variables: list[dict[str, Any]]
    params: dict[str, Any]
    feature: str | None
    price: dict[str, Any] | None
    usage_count: int
    template_deleted: bool
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, version: TemplateVersion) -> TemplateVersionOut:
        return cls(
            template_id=version.template_id,
            visibility=version.visibility,
            version=version.version,
            usage_count=version.usage_count,
            template_deleted=version.template_deleted,
            created_at=version.created_at,
            created_by=version.created_by,
            **_definition_out(version.definition),
        )


class TemplatePageOut(ResponseModel):
    object: str = "list"
    data: list[TemplateOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: TemplatePage) -> TemplatePageOut:
        return cls(data=[TemplateOut.of(t) for t in page.templates], next_cursor=page.next_cursor)


class RenderOut(ResponseModel):
    """A rendering: the prompt, and the parameters, feature and price a generation would use."""

    object: str = "template.rendering"
    template_id: str
    version: int
    kind: str
    prompt: str
    params: dict[str, Any]
    feature: str | None
    price: dict[str, Any] | None

    @classmethod
    def of(cls, rendered: Rendered) -> RenderOut:
        return cls(
            template_id=rendered.template_id,
            version=rendered.template_version,
            kind=rendered.version.definition.kind,
            prompt=rendered.prompt,
            params={k: list(v) if isinstance(v, tuple) else v for k, v in rendered.params.items()},
            feature=rendered.feature,
            price=_price_out(rendered.version.definition.price),
        )


# -- exact JSON out ----------------------------------------------------------------------------


def _encode(value: Any) -> str:
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Decimal):
        return format(value.copy_abs() if value.is_zero() else value, "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return json.dumps(iso(value))
    if isinstance(value, Mapping):
        return (
            "{"
            + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_encode(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def template_json_response(
    status: int, model: ResponseModel, headers: Mapping[str, str] | None = None
) -> Response[str]:
    """A JSON answer whose numbers keep their exact digits (a ``Decimal`` default of ``1.50``
    is written ``1.50``; credits as exact decimals)."""
    return Response(
        status_code=status,
        content_type="application/json",
        body=_encode(model.model_dump(mode="python")),
        headers=dict(headers or {}),
    )
