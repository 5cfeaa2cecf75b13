"""Templates (S8): what a template says (its definition, versioned), who owns it, and what a
rendering gives.

A template is owned by an org (``private``) or by the platform (``public``, owner
``PUBLIC``). Its definition is immutable per version: an update writes version ``n + 1`` and the
old ones keep rendering as they did. Money is integers: a declared price is in credit units
(1/10,000 credit) and basis points, exactly as ``data/features.toml`` prices a feature, and
becomes the ``FeatureRule`` the ledger charges.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

from msgspec import Struct
from pydantic import BaseModel, ConfigDict, Field

from tollgate.errors import FieldError, ValidationFailed
from tollgate.plans import Kind
from tollgate.templates.ids import is_template_id
from tollgate.templates.syntax import ParsedBody, TemplateSyntaxError, parse_body
from tollgate.templates.variables import MAX_VARIABLES, VariableSpec
from tollgate.units import BASIS_POINTS

# The registry (and every provider it names) is loaded only to check a save, the pricing only
# to check or charge a price.
if TYPE_CHECKING:
    from tollgate.generation.registry import ModelRegistry
    from tollgate.metering.pricing import FeatureCatalog, FeatureRule

TemplateKind = Literal["text", "image"]
Visibility = Literal["private", "public"]
PUBLIC_OWNER = "PUBLIC"
"""The owner of public templates (an org id never looks like this)."""
MAX_BODY_CHARS = 20_000
MAX_PRICE_UNITS = 10_000_000  # 1,000 credits per call
CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
SIZE_PATTERN = r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$"
"""An image size as ``tollgate.generation.registry.parse_size`` reads it (``1024x1024``)."""
_FEATURE_KINDS: Mapping[TemplateKind, frozenset[Kind | None]] = {
    "text": frozenset({"text", "chat", None}),
    "image": frozenset({"image", None}),
}
_PRICE_KIND: Mapping[TemplateKind, Kind] = {"text": "text", "image": "image"}

ModelName = Annotated[str, Field(min_length=1, max_length=200)]
FeatureName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")]


class TemplateParams(BaseModel):
    """Default parameters of a template; a request's own parameters override them. Text
    templates take the sampling knobs, image templates the image ones."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    model: ModelName | None = None
    # text
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    stop: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] | None = Field(
        default=None, max_length=4, strict=False
    )
    # image
    size: str | None = Field(default=None, pattern=SIZE_PATTERN)
    quality: str | None = Field(default=None, max_length=20)
    style: str | None = Field(default=None, max_length=40)
    n: int | None = Field(default=None, ge=1, le=10)

    def set_fields(self) -> dict[str, Any]:
        """The parameters given (``None`` ones left out)."""
        return self.model_dump(exclude_none=True)


TEXT_PARAMS = frozenset({"model", "max_tokens", "temperature", "top_p", "seed", "stop"})
IMAGE_PARAMS = frozenset({"model", "size", "quality", "style", "n"})


class TemplatePrice(BaseModel):
    """The price a template declares, in the units of ``data/features.toml``: ``flat`` is
    ``credits`` units per call; ``cost_plus`` is the provider cost x ``markup_bp`` / 10,000,
    converted to credits, at least ``minimum_credits`` units. A cache hit is free unless
    ``cache_hit_credits`` says otherwise."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    rule: Literal["flat", "cost_plus"]
    credits: int = Field(0, ge=0, le=MAX_PRICE_UNITS)
    markup_bp: int = Field(BASIS_POINTS, ge=0, le=100 * BASIS_POINTS)
    minimum_credits: int = Field(0, ge=0, le=MAX_PRICE_UNITS)
    cache_hit_credits: int | None = Field(None, ge=0, le=MAX_PRICE_UNITS)

    def rule_for(self, feature: str, kind: TemplateKind, title: str = "") -> FeatureRule:
        """The ``FeatureRule`` the ledger charges (``ValueError`` if inconsistent)."""
        from tollgate.metering.pricing import CacheHitRule, FeatureRule

        cache_hit = (
            CacheHitRule(rule="flat", credits=self.cache_hit_credits)
            if self.cache_hit_credits is not None
            else None
        )
        return FeatureRule(
            name=feature,
            title=title,
            kind=_PRICE_KIND[kind],
            rule=self.rule,
            credits=self.credits,
            markup_bp=self.markup_bp,
            minimum_credits=self.minimum_credits,
            cache_hit=cache_hit,
        )


class TemplateDefinition(BaseModel):
    """What a version of a template says. Field-level checks are here; the checks across
    fields and against the data files are ``definition_problems``.

    A definition arrives as JSON read with exact numbers (a request body, or the stored
    definition): its models are strict, as bodies are (``tollgate.api.params``), so a wrong JSON
    type is refused rather than coerced (``"max_length": "5"``). Only a JSON array is taken for
    a tuple (``strict=False`` on those fields: their items stay strict)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=2_000)
    category: str = Field("general", pattern=CATEGORY_PATTERN)
    kind: TemplateKind = "text"
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS)
    variables: tuple[VariableSpec, ...] = Field((), max_length=MAX_VARIABLES, strict=False)
    params: TemplateParams = Field(default_factory=TemplateParams)
    feature: FeatureName | None = None
    price: TemplatePrice | None = None

    @property
    def parsed(self) -> ParsedBody:
        """The body as segments (``TemplateSyntaxError`` for a body that was never checked)."""
        return _parsed(self.body)

    def variable(self, name: str) -> VariableSpec | None:
        return next((spec for spec in self.variables if spec.name == name), None)


@lru_cache(maxsize=1024)
def _parsed(body: str) -> ParsedBody:
    return parse_body(body)


def definition_problems(
    definition: TemplateDefinition,
    registry: ModelRegistry,
    features: FeatureCatalog,
) -> list[FieldError]:
    """Everything wrong with a definition across its fields: a malformed body (with positions),
    placeholders that name no declared variable, a variable declared twice, parameters of the
    other kind, an unknown model or one of the wrong kind, an unknown feature or one of the
    wrong kind, and a price under the name of a catalog feature (which would make the usage log
    lie about what was charged)."""
    problems: list[FieldError] = []
    try:
        parsed: ParsedBody | None = parse_body(definition.body)
    except TemplateSyntaxError as exc:
        parsed = None
        problems.extend(FieldError("body", p.describe(), "template_syntax") for p in exc.problems)
    names = [spec.name for spec in definition.variables]
    for index, name in enumerate(names):
        if name in names[:index]:
            problems.append(FieldError(f"variables.{index}.name", f"variable {name!r} is declared twice"))
    if parsed is not None:
        undeclared = [name for name in parsed.names if name not in names]
        if undeclared:
            problems.append(
                FieldError(
                    "body",
                    f"placeholders without a declared variable: {', '.join(undeclared)}",
                    "undeclared_variable",
                )
            )
    allowed = TEXT_PARAMS if definition.kind == "text" else IMAGE_PARAMS
    for name in sorted(set(definition.params.set_fields()) - allowed):
        problems.append(FieldError(f"params.{name}", f"not a parameter of {definition.kind} templates"))
    model = definition.params.model
    if model is not None:
        wanted = "chat" if definition.kind == "text" else "image"
        spec_kind = (
            registry.models[model].kind
            if model in registry.models
            else registry.models[registry.aliases[model].chain[0]].kind
            if model in registry.aliases
            else None
        )
        if spec_kind is None:
            problems.append(FieldError("params.model", f"unknown model {model!r}", "unknown_model"))
        elif spec_kind != wanted:
            problems.append(
                FieldError(
                    "params.model", f"{model!r} serves {spec_kind} requests, not {wanted}", "wrong_kind"
                )
            )
    feature = definition.feature
    if definition.price is None and feature is not None:
        known = features.features.get(feature)
        if known is None:
            problems.append(
                FieldError(
                    "feature",
                    f"unknown feature {feature!r}: name a feature of the catalog, or declare a price",
                    "unknown_feature",
                )
            )
        elif known.kind not in _FEATURE_KINDS[definition.kind]:
            problems.append(
                FieldError("feature", f"feature {feature!r} is for {known.kind} requests", "wrong_kind")
            )
    if definition.price is not None:
        if feature is not None and feature in features.features:
            problems.append(
                FieldError(
                    "feature",
                    f"{feature!r} is priced by the feature catalog; give the template's price another name",
                    "feature_taken",
                )
            )
        try:
            definition.price.rule_for(feature or "template", definition.kind)
        except ValueError as exc:
            problems.append(FieldError("price", str(exc).splitlines()[-1].strip(), "invalid_price"))
    return problems


class TemplateUse(Struct, frozen=True):
    """One use of a template version, to be counted (``TemplateService.stage_use``)."""

    owner: str
    template_id: str
    version: int

    @property
    def public(self) -> bool:
        return self.owner == PUBLIC_OWNER

    def as_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "template_id": self.template_id, "version": self.version}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TemplateUse:
        return cls(str(raw["owner"]), str(raw["template_id"]), int(raw["version"]))


class Template(Struct, frozen=True):
    """A template as it is now: its current version's definition, and its counters."""

    template_id: str
    owner: str
    version: int
    definition: TemplateDefinition
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    usage_count: int = 0
    deleted_at: datetime | None = None
    seed_digest: str | None = None
    """For a starter template: the digest of the shipped definition it was last seeded from."""

    @property
    def visibility(self) -> Visibility:
        return "public" if self.owner == PUBLIC_OWNER else "private"


class TemplateVersion(Struct, frozen=True):
    """One immutable version of a template."""

    template_id: str
    owner: str
    version: int
    definition: TemplateDefinition
    created_at: datetime
    created_by: str
    usage_count: int = 0
    template_deleted: bool = False

    @property
    def visibility(self) -> Visibility:
        return "public" if self.owner == PUBLIC_OWNER else "private"

    @property
    def use(self) -> TemplateUse:
        return TemplateUse(self.owner, self.template_id, self.version)

    def feature_name(self) -> str | None:
        """The feature its requests are recorded under: the declared one; for a declared price
        without a name, the template's id; ``None``: the default of the request's kind."""
        if self.definition.price is not None:
            return self.definition.feature or self.template_id
        return self.definition.feature

    def pricing(self) -> FeatureRule | None:
        """The rule the ledger charges when the template declares a price."""
        price = self.definition.price
        if price is None:
            return None
        return price.rule_for(
            self.feature_name() or self.template_id, self.definition.kind, self.definition.name
        )


class Rendered(Struct, frozen=True):
    """A template version rendered with a request's variables: the prompt, the parameters
    (the template's defaults under the request's own), and how it is charged and recorded."""

    version: TemplateVersion
    prompt: str
    params: Mapping[str, Any]
    feature: str | None
    pricing: FeatureRule | None

    @property
    def template_id(self) -> str:
        return self.version.template_id

    @property
    def template_version(self) -> int:
        return self.version.version

    @property
    def use(self) -> TemplateUse:
        return self.version.use


def refuse_another_feature(template_feature: str | None, requested: str | None) -> None:
    """A template charged as its own feature cannot be charged as another: ``422`` on
    ``feature`` when the request names a different one."""
    if template_feature is not None and requested not in (None, template_feature):
        raise ValidationFailed(
            [
                FieldError(
                    "feature",
                    f"this template is charged as its feature {template_feature!r}",
                    "feature_fixed",
                )
            ]
        )


class TemplatePage(Struct, frozen=True):
    templates: tuple[Template, ...]
    next_cursor: str | None


def owners_for(org_id: str | None) -> tuple[str, ...]:
    """Whose templates a caller may read: its org's, then the public ones."""
    return (org_id, PUBLIC_OWNER) if org_id is not None else (PUBLIC_OWNER,)


# -- stored form -------------------------------------------------------------------------------


def _encode(value: Any) -> str:
    """Compact JSON in which a ``Decimal`` keeps its exact digits (``1.50`` stays ``1.50``: a
    default renders the same after it was stored) and a float is its shortest repr."""
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        items = sorted(value.items())
        return (
            "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_encode(v)}" for k, v in items) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"cannot store a {type(value).__name__} in a template definition")


def definition_to_json(definition: TemplateDefinition) -> str:
    """The definition as stored: canonical JSON (sorted keys, unset fields left out)."""
    return _encode(definition.model_dump(mode="python", exclude_defaults=True))


def definition_from_json(text: str) -> TemplateDefinition:
    """A stored definition (numbers read back as the exact ``Decimal`` they were)."""
    return TemplateDefinition.model_validate(json.loads(text, parse_float=Decimal))


def definition_digest(definition: TemplateDefinition) -> str:
    """A digest of what a definition says (the same definition, the same digest)."""
    return hashlib.sha256(definition_to_json(definition).encode("utf-8")).hexdigest()


__all__ = [
    "PUBLIC_OWNER",
    "Rendered",
    "Template",
    "TemplateDefinition",
    "TemplateKind",
    "TemplatePage",
    "TemplateParams",
    "TemplatePrice",
    "TemplateUse",
    "TemplateVersion",
    "Visibility",
    "definition_digest",
    "definition_from_json",
    "definition_problems",
    "definition_to_json",
    "is_template_id",
    "owners_for",
]
