"""What a generation request runs under: who asks, under which id, the org's generation
settings and the template it was made from (``RequestContext``).

Its own module, light on imports: the handlers build one for every request before they ask
``tollgate.services`` for the generation service (which loads pricing, the registry and the
rest on first use).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from msgspec import Struct, field
from pydantic import ValidationError

from tollgate.errors import Conflict
from tollgate.generation.security import ContentPolicy
from tollgate.identity.models import Caller
from tollgate.staging import StagedWrites

if TYPE_CHECKING:  # annotations only
    from tollgate.generation.records import GenerationRecord
    from tollgate.metering.pricing import FeatureRule

logger = Logger()


class OrgGenerationSettings(Struct, frozen=True):
    """What an org's settings say about generation: its content policy, and whether prompts
    are kept on records (else only their hash)."""

    policy: ContentPolicy = field(default_factory=ContentPolicy)
    keep_prompts: bool = True

    @classmethod
    def from_org_settings(cls, settings: Mapping[str, object]) -> OrgGenerationSettings:
        raw = settings.get("content_policy")
        try:
            policy = ContentPolicy.model_validate(raw) if isinstance(raw, Mapping) else ContentPolicy()
        except ValidationError:
            logger.warning("invalid content_policy in org settings; using the default policy")
            policy = ContentPolicy()
        return cls(policy=policy, keep_prompts=settings.get("keep_prompts") is not False)


class TemplateBinding(Struct, frozen=True):
    """A request generated from a template (S8): the template and version its record and usage
    log entry name, the price it declares (charged instead of the request's feature), and how
    its use is counted: ``stage_use`` gives writes committed with the charge, ``count_use`` counts
    after it (each may be absent; ``tollgate.templates`` decides which)."""

    template_id: str
    version: int
    pricing: FeatureRule | None = None
    stage_use: Callable[[], StagedWrites | None] | None = None
    count_use: Callable[[], None] | None = None


class RequestContext(Struct, frozen=True):
    """Who asks, under which id, and the org's generation settings. ``template`` binds the
    request to a template version; ``staged_with`` gives, for a completed request's record,
    more writes to commit in the same transaction as its charge (a conversation's messages)."""

    caller: Caller
    request_id: str
    org: OrgGenerationSettings = field(default_factory=OrgGenerationSettings)
    parent_id: str | None = None
    template: TemplateBinding | None = None
    staged_with: Callable[[GenerationRecord], StagedWrites | None] | None = None

    @property
    def org_id(self) -> str:
        if self.caller.org_id is None:
            raise Conflict("The platform admin has no org to generate for; use an org's key")
        return self.caller.org_id

    def completed_writes(self, record: GenerationRecord) -> list[StagedWrites]:
        """What else is written with the charge of a completed request."""
        found = [self.template.stage_use() if self.template and self.template.stage_use else None]
        found.append(self.staged_with(record) if self.staged_with else None)
        return [staged for staged in found if staged is not None]


__all__ = ["OrgGenerationSettings", "RequestContext", "TemplateBinding"]
