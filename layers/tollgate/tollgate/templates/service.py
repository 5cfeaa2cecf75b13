"""The templates use cases (S8): create, version, read, list, delete, render, and what a
generation from a template needs (its prompt, parameters, price, and its use counted).

Who may do what (S2):

- An org's templates (``private``) are its own: any key of the org (owner or member) reads,
  renders and generates from them; only owners create, update and delete them. Another org's
  private template is ``404`` for everything, as if it did not exist.
- Public templates are read, rendered and generated from by every org; only the platform admin
  creates, updates and deletes them (an org's key gets ``403``: it can see them).
- The admin has no org: it manages public templates and reads only those.

A deleted template stops resolving (``404`` for read, render and generate) and leaves the
listings; its versions stay readable, so records that name one still resolve it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from msgspec import Struct
from msgspec.structs import replace
from pydantic import ValidationError

from tollgate.api.params import field_errors
from tollgate.clock import Clock, SystemClock
from tollgate.errors import Conflict, FieldError, Forbidden, InvalidRequest, NotFound, ValidationFailed
from tollgate.identity.models import Caller, Role
from tollgate.ids import new_id
from tollgate.templates.ids import check_template_id
from tollgate.templates.models import (
    IMAGE_PARAMS,
    PUBLIC_OWNER,
    Rendered,
    Template,
    TemplateDefinition,
    TemplateKind,
    TemplatePage,
    TemplateUse,
    TemplateVersion,
    Visibility,
    definition_digest,
    definition_problems,
    owners_for,
)
from tollgate.templates.ports import TemplateExists, TemplateStore, VersionConflict
from tollgate.templates.variables import validate_values

if TYPE_CHECKING:
    from tollgate.generation.registry import ModelRegistry
    from tollgate.metering.pricing import FeatureCatalog, FeatureRule
    from tollgate.staging import StagedWrites

logger = Logger()

MAX_PAGE = 100


class ImageTemplateRequest(Struct, frozen=True):
    """An image template rendered for ``/v1/images`` (S7): the prompt and the image parameters
    (the template's defaults under the request's own), how the job is charged (``pricing``, a
    declared price; else ``feature``, else the ``image`` feature) and what its record names
    (``template_id``, ``template_version``; ``use`` is what ``TemplateService.stage_use`` counts)."""

    prompt: str
    model: str | None
    size: str | None
    quality: str | None
    style: str | None
    n: int | None
    feature: str | None
    pricing: FeatureRule | None
    template_id: str
    template_version: int
    use: TemplateUse

    def as_fields(self) -> dict[str, Any]:
        """The image request's fields this rendering sets (``prompt`` and every parameter
        given): merge them over the request body, minus its ``template_id`` and ``variables``."""
        fields = {
            "prompt": self.prompt,
            "model": self.model,
            "size": self.size,
            "quality": self.quality,
            "style": self.style,
            "n": self.n,
        }
        return {name: value for name, value in fields.items() if value is not None}

    @property
    def charged_as(self) -> str | FeatureRule:
        """What ``MeteringService.reserve`` charges the job as."""
        return self.pricing or self.feature or "image"


SeedOutcome = Literal["created", "updated", "unchanged", "deleted"]


class TemplateService:
    """Templates of every org and the public ones, over a ``TemplateStore``."""

    def __init__(
        self,
        store: TemplateStore,
        registry: ModelRegistry | None = None,
        features: FeatureCatalog | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._features = features
        self._clock = clock or SystemClock()

    def _catalogs(self) -> tuple[ModelRegistry, FeatureCatalog]:
        """The model registry and the feature catalog a definition is checked against, loaded
        on the first save: reading and rendering need neither (nor every provider module the
        registry imports), so the templates function's cold start does not pay for them."""
        if self._registry is None:
            from tollgate.generation.registry import load_models

            self._registry = load_models()
        if self._features is None:
            from tollgate.metering.pricing import load_features

            self._features = load_features()
        return self._registry, self._features

    # -- reading ---------------------------------------------------------------------------

    def get(self, caller: Caller, template_id: str) -> Template:
        """The template, if it is the caller's org's or public and not deleted; else 404."""
        template = self._head(caller, template_id)
        if template is None or template.deleted_at is not None:
            raise NotFound(f"No template {template_id!r}")
        return template

    def get_version(self, caller: Caller, template_id: str, version: int) -> TemplateVersion:
        """One version of a template the caller may read; deleted templates' versions too."""
        check_template_id(template_id)
        found, _head = self._store.version(owners_for(caller.org_id), template_id, version)
        if found is None:
            raise NotFound(f"No version {version} of template {template_id!r}")
        return found

    def list(
        self,
        caller: Caller,
        *,
        category: str | None = None,
        visibility: Visibility | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> TemplatePage:
        """The caller's org's templates then the public ones (or one of the two), by category
        then id; ``next_cursor`` continues, bound to the caller and the filters."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
        owners = [
            owner
            for owner in owners_for(caller.org_id)
            if visibility is None or (visibility == "public") == (owner == PUBLIC_OWNER)
        ]
        filters = {"scope": caller.scope, "category": category, "visibility": visibility}
        phase, start = (0, None) if cursor is None else self._read_cursor(cursor, filters, owners, category)
        found: list[Template] = []
        while phase < len(owners):
            items, last = self._store.page(owners[phase], category, limit - len(found), start)
            found.extend(items)
            if last is not None:
                if len(found) >= limit:
                    return TemplatePage(tuple(found), self._write_cursor(filters, phase, last))
                start = last
                continue
            phase, start = phase + 1, None
            if len(found) >= limit and phase < len(owners):
                return TemplatePage(tuple(found), self._write_cursor(filters, phase, None))
        return TemplatePage(tuple(found), None)

    @staticmethod
    def _write_cursor(filters: Mapping[str, Any], phase: int, key: Mapping[str, Any] | None) -> str:
        text = json.dumps({**filters, "phase": phase, "key": key}, separators=(",", ":"), sort_keys=True)
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def _read_cursor(
        self, cursor: str, filters: Mapping[str, Any], owners: Sequence[str], category: str | None
    ) -> tuple[int, dict[str, Any] | None]:
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidRequest("Invalid cursor") from None
        if not isinstance(raw, dict) or any(raw.get(name) != value for name, value in filters.items()):
            raise InvalidRequest("Invalid cursor (it belongs to another listing)")
        phase, key = raw.get("phase"), raw.get("key")
        if not isinstance(phase, int) or isinstance(phase, bool) or not 0 <= phase < len(owners):
            raise InvalidRequest("Invalid cursor")
        if key is not None and not (
            isinstance(key, dict) and self._store.check_start(owners[phase], category, key)
        ):
            raise InvalidRequest("Invalid cursor")
        return phase, key

    def _head(self, caller: Caller, template_id: str) -> Template | None:
        check_template_id(template_id)
        heads = self._store.heads(owners_for(caller.org_id), template_id)
        return heads[0] if heads else None

    # -- writing ---------------------------------------------------------------------------

    def create(
        self, caller: Caller, fields: Mapping[str, Any], visibility: Visibility | None = None
    ) -> Template:
        """A new template at version 1: the caller's org's (owners), or public (the admin)."""
        chosen: Visibility = visibility or ("public" if caller.org_id is None else "private")
        if chosen == "public":
            if not caller.is_admin:
                raise Forbidden("Only the platform admin publishes public templates")
            owner = PUBLIC_OWNER
        else:
            if caller.org_id is None:
                raise ValidationFailed(
                    [FieldError("visibility", "The platform admin has no org: its templates are public")]
                )
            self._require_owner(caller)
            owner = caller.org_id
        definition = self._definition(fields)
        now = self._clock.now()
        template = Template(
            template_id=new_id("tpl"),
            owner=owner,
            version=1,
            definition=definition,
            created_at=now,
            created_by=caller.user,
            updated_at=now,
            updated_by=caller.user,
        )
        self._store.create(template)
        return template

    def update(
        self,
        caller: Caller,
        template_id: str,
        changes: Mapping[str, Any],
        base_version: int | None = None,
    ) -> Template:
        """A new version with ``changes`` over the current definition (fields left out keep
        their value). An update that changes nothing makes no version. ``base_version``, when
        given, must be the current version; two updates at once: one wins, the other is 409."""
        current = self.get(caller, template_id)
        self._require_writer(caller, current)
        if base_version is not None and base_version != current.version:
            raise Conflict(
                f"Template {template_id!r} is at version {current.version}, not {base_version}",
                extra={"version": current.version},
            )
        definition = self._definition({**current.definition.model_dump(exclude_defaults=True), **changes})
        if definition == current.definition:
            return current
        return self._save_version(current, definition, caller.user)

    def delete(self, caller: Caller, template_id: str) -> None:
        """Soft-delete: 404 from now on for read, render and generate; versions stay readable."""
        current = self.get(caller, template_id)
        self._require_writer(caller, current)
        try:
            self._store.mark_deleted(current, self._clock.now(), caller.user)
        except VersionConflict:
            raise Conflict(f"Template {template_id!r} changed meanwhile; retry") from None

    def _save_version(
        self, current: Template, definition: TemplateDefinition, by: str, seed_digest: str | None = None
    ) -> Template:
        now = self._clock.now()
        updated = replace(
            current,
            version=current.version + 1,
            definition=definition,
            updated_at=now,
            updated_by=by,
            seed_digest=seed_digest or current.seed_digest,
        )
        try:
            self._store.save_version(updated, current.version)
        except VersionConflict:
            raise Conflict(
                f"Template {current.template_id!r} was updated meanwhile (it was at version "
                f"{current.version}); read it again and retry",
            ) from None
        return updated

    def _definition(self, fields: Mapping[str, Any]) -> TemplateDefinition:
        try:
            definition = TemplateDefinition.model_validate(dict(fields))
        except ValidationError as exc:
            raise ValidationFailed(field_errors(exc)) from None
        problems = definition_problems(definition, *self._catalogs())
        if problems:
            raise ValidationFailed(problems)
        return definition

    @staticmethod
    def _require_owner(caller: Caller) -> None:
        if caller.role is not Role.OWNER:
            raise Forbidden("Only an owner of the organization manages its templates")

    def _require_writer(self, caller: Caller, template: Template) -> None:
        if template.owner == PUBLIC_OWNER:
            if not caller.is_admin:
                raise Forbidden("Only the platform admin changes public templates")
        else:
            self._require_owner(caller)

    # -- using -----------------------------------------------------------------------------

    def resolve(self, caller: Caller, template_id: str, version: int | None = None) -> TemplateVersion:
        """The version a render or a generation uses: the current one, or ``version``. A
        deleted template resolves to nothing (404), whichever version is asked for."""
        if version is None:
            head = self.get(caller, template_id)
            return TemplateVersion(
                template_id=head.template_id,
                owner=head.owner,
                version=head.version,
                definition=head.definition,
                created_at=head.updated_at,
                created_by=head.updated_by,
            )
        check_template_id(template_id)
        found, owning = self._store.version(owners_for(caller.org_id), template_id, version)
        if owning is None or owning.deleted_at is not None:
            raise NotFound(f"No template {template_id!r}")
        if found is None:
            raise ValidationFailed(
                [
                    FieldError(
                        "version", f"template {template_id!r} has no version {version}", "unknown_version"
                    )
                ]
            )
        return found

    def render(
        self,
        caller: Caller,
        template_id: str,
        variables: Mapping[str, Any] | None,
        *,
        version: int | None = None,
        kind: TemplateKind | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """Render a version with ``variables``: each value validated against its declaration
        (422 naming every ``variables.<name>`` at fault) and inserted as plain text. ``kind``
        refuses a template of the other kind; ``overrides`` are the request's own parameters,
        over the template's defaults."""
        found = self.resolve(caller, template_id, version)
        definition = found.definition
        if kind is not None and definition.kind != kind:
            where = "/v1/images" if definition.kind == "image" else "/v1/generate"
            raise ValidationFailed(
                [
                    FieldError(
                        "template_id",
                        f"{template_id!r} is a {definition.kind} template; use it with {where}",
                        "wrong_kind",
                    )
                ]
            )
        texts = validate_values(definition.variables, variables)
        prompt = definition.parsed.render(texts)
        if not prompt.strip():
            raise ValidationFailed([FieldError("variables", "The template renders an empty prompt", "empty")])
        params = {
            **definition.params.set_fields(),
            **{k: v for k, v in (overrides or {}).items() if v is not None},
        }
        return Rendered(found, prompt, params, found.feature_name(), found.pricing())

    def render_image(
        self,
        caller: Caller,
        template_id: str,
        variables: Mapping[str, Any] | None,
        *,
        version: int | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> ImageTemplateRequest:
        """An image template rendered into what ``/v1/images`` needs (``ImageTemplateRequest``).
        ``overrides``: the request's own ``model``, ``size``, ``quality``, ``style``, ``n``."""
        unknown = set(overrides or {}) - IMAGE_PARAMS
        if unknown:
            raise ValueError(f"not image parameters: {', '.join(sorted(unknown))}")
        rendered = self.render(
            caller, template_id, variables, version=version, kind="image", overrides=overrides
        )
        params = rendered.params
        return ImageTemplateRequest(
            prompt=rendered.prompt,
            model=params.get("model"),
            size=params.get("size"),
            quality=params.get("quality"),
            style=params.get("style"),
            n=params.get("n"),
            feature=rendered.feature,
            pricing=rendered.pricing,
            template_id=rendered.template_id,
            template_version=rendered.template_version,
            use=rendered.use,
        )

    # -- usage counts ----------------------------------------------------------------------

    def stage_use(self, use: TemplateUse) -> StagedWrites | None:
        """The writes that count a use in the charge's own transaction, for an org's own template:
        charged and counted together. ``None`` for a public template: its counters are shared
        by every org, and inside each org's ledger transaction they would make independent orgs
        conflict with each other; ``count_use`` counts it right after the charge instead."""
        return None if use.public else self._store.stage_use(use)

    def count_use(self, use: TemplateUse) -> None:
        """Count a use of a public template after its charge (best effort: a failure is logged,
        never the client's error). Does nothing for a private one (``stage_use`` counted it)."""
        if not use.public:
            return
        try:
            self._store.count_use(use)
        except Exception:
            logger.exception("could not count a use of a public template", extra=use.as_json())

    # -- starter templates -----------------------------------------------------------------

    def ensure_public(self, template_id: str, definition: TemplateDefinition, by: str) -> SeedOutcome:
        """Make the public template ``template_id`` say ``definition`` (the starter set): create
        it, or write a new version when the shipped definition changed since it was last seeded;
        nothing when it did not (edits made since through the API are kept until the shipped
        file changes). A deleted starter stays deleted."""
        problems = definition_problems(definition, *self._catalogs())
        if problems:
            raise ValidationFailed(problems)
        digest = definition_digest(definition)
        for _attempt in range(3):
            heads = self._store.heads((PUBLIC_OWNER,), template_id)
            if not heads:
                now = self._clock.now()
                template = Template(
                    template_id, PUBLIC_OWNER, 1, definition, now, by, now, by, seed_digest=digest
                )
                try:
                    self._store.create(template)
                except TemplateExists:
                    continue  # seeded concurrently: look again
                return "created"
            head = heads[0]
            if head.deleted_at is not None:
                return "deleted"
            if head.seed_digest == digest:
                return "unchanged"
            if head.definition == definition:
                return "unchanged"  # already says it (edited to it, or seeded before digests)
            try:
                self._save_version(head, definition, by, seed_digest=digest)
            except Conflict:
                continue
            return "updated"
        raise Conflict(f"Template {template_id!r} kept changing while it was seeded; run again")


__all__ = ["ImageTemplateRequest", "SeedOutcome", "TemplateService", "check_template_id"]
