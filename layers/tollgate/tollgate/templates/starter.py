"""The starter templates shipped as data (``data/templates/*.toml``): public templates every
org can use from the start (a product description, a listing photo, a payment reminder).

``load_starters`` reads and validates them (the same checks as the API makes); ``seed_starters``
makes the public templates say what the files say, idempotently: an unchanged file changes
nothing, a changed one makes a new version. The local runtime seeds at start
(``tollgate_local.bootstrap``); a deployed stack with ``python -m tollgate_local.seed_templates``.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

from msgspec import Struct
from pydantic import Field, ValidationError

from tollgate.generation.registry import ModelRegistry, load_models
from tollgate.metering.pricing import FeatureCatalog, load_features
from tollgate.templates.ids import TEMPLATE_ID
from tollgate.templates.models import TemplateDefinition, definition_problems
from tollgate.templates.service import SeedOutcome, TemplateService

STARTER_FOLDER = "data/templates"
STARTER_PREFIX = "tpl_starter-"
SEEDED_BY = "tollgate-starter-templates"


class StarterFile(TemplateDefinition):
    """A starter template file: its fixed id, then the definition."""

    id: str = Field(pattern=TEMPLATE_ID.pattern)

    def definition(self) -> TemplateDefinition:
        return TemplateDefinition.model_validate(self.model_dump(exclude={"id"}, exclude_defaults=True))


class StarterTemplate(Struct, frozen=True):
    template_id: str
    definition: TemplateDefinition
    source: str


class InvalidStarter(ValueError):
    """A starter file that does not validate; the message names the file and every problem."""


def parse_starter(
    text: str, source: str, registry: ModelRegistry, features: FeatureCatalog
) -> StarterTemplate:
    """One starter file's text, validated as the API validates a template."""
    try:
        raw: dict[str, Any] = tomllib.loads(text)
        starter = StarterFile.model_validate(raw)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidStarter(f"{source}: not TOML: {exc}") from None
    except ValidationError as exc:
        raise InvalidStarter(f"{source}: {exc}") from None
    if not starter.id.startswith(STARTER_PREFIX):
        raise InvalidStarter(f"{source}: a starter id starts with {STARTER_PREFIX!r}")
    definition = starter.definition()
    problems = definition_problems(definition, registry, features)
    if problems:
        listed = "; ".join(f"{p.field}: {p.message}" for p in problems)
        raise InvalidStarter(f"{source}: {listed}")
    return StarterTemplate(starter.id, definition, source)


@cache
def load_starters() -> tuple[StarterTemplate, ...]:
    """Every ``data/templates/*.toml`` shipped in the package, validated, by file name."""
    folder = resources.files("tollgate").joinpath(STARTER_FOLDER)
    registry, features = load_models(), load_features()
    starters = [
        parse_starter(entry.read_text("utf-8"), f"{STARTER_FOLDER}/{entry.name}", registry, features)
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".toml")
    ]
    ids = [starter.template_id for starter in starters]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise InvalidStarter(f"{STARTER_FOLDER}: ids used twice: {', '.join(duplicated)}")
    return tuple(starters)


def seed_starters(
    service: TemplateService, starters: tuple[StarterTemplate, ...] | None = None
) -> dict[str, SeedOutcome]:
    """Make each starter's public template say what its file says; what happened to each."""
    return {
        starter.template_id: service.ensure_public(starter.template_id, starter.definition, SEEDED_BY)
        for starter in (load_starters() if starters is None else starters)
    }


__all__ = ["InvalidStarter", "StarterTemplate", "load_starters", "parse_starter", "seed_starters"]
