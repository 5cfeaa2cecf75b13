"""The model registry (``data/models.toml``): every model clients may name, and aliases that
name a fallback chain of models (S6).

``ModelRegistry.resolve`` turns what a request names (a model or an alias) into the chain to
try, given the providers configured here; ``tollgate.generation.fallback`` walks that chain.
Prices are not here: ``data/prices.toml`` prices each model under the same name.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Iterable
from functools import cache
from importlib import resources
from typing import Annotated, Literal

from msgspec import Struct
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tollgate.errors import FieldError, ValidationFailed
from tollgate.providers.base import MAX_IMAGE_SIDE, Kind
from tollgate.providers.errors import ProviderNotConfigured

Encoding = Literal["cl100k_base", "o200k_base"]
"""The tiktoken encodings shipped in the layer (``tollgate.tokens``)."""

_MODEL_NAME = re.compile(r"^[a-z0-9-]+/[A-Za-z0-9._:-]+$")
_ALIAS_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")

Size = Annotated[str, Field(pattern=_SIZE.pattern)]


def parse_size(size: str) -> tuple[int, int]:
    """``"1024x768"`` -> ``(1024, 768)``; ``ValueError`` for anything else."""
    match = _SIZE.match(size)
    if match is None:
        raise ValueError(f"size must look like 1024x1024, not {size!r}")
    return int(match.group(1)), int(match.group(2))


class ModelSpec(BaseModel):
    """One model of the registry."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str = Field(pattern=_MODEL_NAME.pattern)
    provider: str
    kind: Kind
    context_window: int = Field(gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    encoding: Encoding = "cl100k_base"
    upstream: str | None = Field(default=None, min_length=1)
    dimensions: int | None = Field(default=None, gt=0)
    sizes: tuple[Size, ...] = ()
    qualities: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    deterministic: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        # The adapters (and httpx with them) load with the registry's data, not at import.
        from tollgate.providers.catalog import PROVIDER_KINDS

        prefix = self.name.split("/", 1)[0]
        if self.provider != prefix:
            raise ValueError(f"{self.name}: provider {self.provider!r} differs from the name's prefix")
        if self.provider not in PROVIDER_KINDS:
            raise ValueError(f"{self.name}: unknown provider {self.provider!r}")
        if self.kind not in PROVIDER_KINDS[self.provider]:
            raise ValueError(f"{self.name}: {self.provider} serves no {self.kind} models")
        if self.kind == "chat" and self.max_output_tokens is None:
            raise ValueError(f"{self.name}: a chat model needs max_output_tokens")
        if self.kind == "embedding" and self.dimensions is None:
            raise ValueError(f"{self.name}: an embedding model needs dimensions")
        if self.kind == "image":
            if not self.sizes:
                raise ValueError(f"{self.name}: an image model needs sizes")
            for size in self.sizes:
                width, height = parse_size(size)
                if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
                    raise ValueError(f"{self.name}: size {size} is over {MAX_IMAGE_SIDE} pixels a side")
        elif self.sizes or self.qualities or self.styles:
            raise ValueError(f"{self.name}: sizes, qualities and styles are for image models")
        return self

    @property
    def model_id(self) -> str:
        """The provider's own id for this model (what goes in the provider request)."""
        return self.upstream or self.name.split("/", 1)[1]

    @property
    def default_size(self) -> str | None:
        return self.sizes[0] if self.sizes else None


class Alias(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str = Field(pattern=_ALIAS_NAME.pattern)
    chain: tuple[str, ...] = Field(min_length=1)
    description: str = ""


class ResolvedChain(Struct, frozen=True):
    """What a request named, and the models to try for it, in order."""

    requested: str
    alias: str | None
    models: tuple[ModelSpec, ...]
    skipped: tuple[str, ...] = ()
    """Models of the chain left out because their provider is not configured."""

    @property
    def kind(self) -> Kind:
        return self.models[0].kind


class ModelRegistry(BaseModel):
    """Every model and alias, validated together (an alias names known models of one kind)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    models: dict[str, ModelSpec]
    aliases: dict[str, Alias] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _aliases_resolve(self) -> ModelRegistry:
        for name, alias in self.aliases.items():
            if name in self.models:
                raise ValueError(f"alias {name!r} is also a model name")
            unknown = [model for model in alias.chain if model not in self.models]
            if unknown:
                raise ValueError(f"alias {name!r} names unknown models: {', '.join(unknown)}")
            if len(set(alias.chain)) != len(alias.chain):
                raise ValueError(f"alias {name!r} names a model twice")
            kinds = {self.models[model].kind for model in alias.chain}
            if len(kinds) != 1:
                raise ValueError(f"alias {name!r} mixes kinds: {', '.join(sorted(kinds))}")
            if kinds == {"embedding"} and len(alias.chain) != 1:
                raise ValueError(f"embedding alias {name!r} must name exactly one model")
        return self

    def get(self, name: str) -> ModelSpec:
        """The model called ``name``; ``ValidationFailed`` on the ``model`` field if unknown."""
        spec = self.models.get(name)
        if spec is None:
            raise ValidationFailed([FieldError("model", f"unknown model {name!r}", "unknown_model")])
        return spec

    def listed(self, kind: Kind | None = None) -> list[ModelSpec]:
        """The models, optionally of one kind, sorted by name (``GET /v1/models``)."""
        return sorted(
            (spec for spec in self.models.values() if kind is None or spec.kind == kind), key=lambda s: s.name
        )

    def resolve(
        self, requested: str, *, configured: Collection[str], kind: Kind | None = None
    ) -> ResolvedChain:
        """The chain for a model or alias name, keeping only models whose provider is in
        ``configured``. Unknown names and a model of the wrong ``kind`` are ``422`` on the
        ``model`` field; a chain left empty is ``ProviderNotConfigured`` (``503``)."""
        alias = self.aliases.get(requested)
        names: Iterable[str] = alias.chain if alias else (requested,)
        specs = [self.get(name) for name in names]
        if kind is not None and specs[0].kind != kind:
            raise ValidationFailed(
                [
                    FieldError(
                        "model", f"{requested!r} serves {specs[0].kind} requests, not {kind}", "wrong_kind"
                    )
                ]
            )
        usable = tuple(spec for spec in specs if spec.provider in configured)
        skipped = tuple(spec.name for spec in specs if spec.provider not in configured)
        if not usable:
            provider = specs[0].provider if alias is None else "any"
            raise ProviderNotConfigured(
                provider,
                f"no configured provider can serve {requested!r} (tried: {', '.join(skipped)})",
            )
        return ResolvedChain(
            requested=requested, alias=alias.name if alias else None, models=usable, skipped=skipped
        )


def registry_from_toml(text: str) -> ModelRegistry:
    """A registry from the text of a ``models.toml``."""
    raw = tomllib.loads(text)
    models = {name: {"name": name, **body} for name, body in raw.get("models", {}).items()}
    aliases = {name: {"name": name, **body} for name, body in raw.get("aliases", {}).items()}
    return ModelRegistry.model_validate({"models": models, "aliases": aliases})


@cache
def load_models() -> ModelRegistry:
    """The registry shipped in the layer, read and validated once per process."""
    return registry_from_toml(resources.files("tollgate").joinpath("data/models.toml").read_text("utf-8"))
