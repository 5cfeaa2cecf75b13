"""Where templates live (``tollgate.aws.template_store`` over DynamoDB)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from tollgate.staging import StagedWrites
from tollgate.templates.models import Template, TemplateUse, TemplateVersion


class TemplateExists(Exception):
    """A template with this id already exists (for this owner)."""


class VersionConflict(Exception):
    """The template is no longer at the version the write was based on (a concurrent update,
    or it was deleted meanwhile): nothing was written."""


class TemplateStore(Protocol):
    def heads(self, owners: Sequence[str], template_id: str) -> list[Template]:
        """The template of this id among these owners' (at most one: ids are unique), deleted
        ones included. One read."""
        ...

    def version(
        self, owners: Sequence[str], template_id: str, version: int
    ) -> tuple[TemplateVersion | None, Template | None]:
        """Version ``version`` of the template among these owners', with its head. One read."""
        ...

    def create(self, template: Template) -> None:
        """Write the head and version 1 together; ``TemplateExists`` if the id is taken."""
        ...

    def save_version(self, template: Template, previous_version: int) -> None:
        """Write ``template.version`` (an immutable version item) and move the head to it, only
        if the head is still at ``previous_version`` and not deleted (``VersionConflict``)."""
        ...

    def mark_deleted(self, template: Template, at: datetime, by: str) -> None:
        """Soft-delete: the head leaves the listings and stops resolving; its versions stay
        readable. Only if still at ``template.version`` (``VersionConflict``)."""
        ...

    def page(
        self, owner: str, category: str | None, limit: int, start: Mapping[str, Any] | None
    ) -> tuple[list[Template], dict[str, Any] | None]:
        """One page of an owner's live templates (optionally of one category), by category
        then id, and the key to continue from."""
        ...

    def check_start(self, owner: str, category: str | None, start: Mapping[str, Any]) -> bool:
        """Whether ``start`` is a continuation key this owner's listing could have given."""
        ...

    def stage_use(self, use: TemplateUse) -> StagedWrites:
        """The writes that count one use of a version (template total and version), for another
        store's transaction. Unconditional ``ADD``."""
        ...

    def count_use(self, use: TemplateUse) -> None:
        """Count one use now (both counters in one write)."""
        ...
