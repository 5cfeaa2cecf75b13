"""Templates in the Tollgate table: the adapter behind ``tollgate.templates.ports.TemplateStore``.

Items (see ``docs/templates.md``), all under ``pk = TPL#<owner>#<template id>`` (owner: the org
id, or ``PUBLIC``), so a template is found only among the owners a caller may read:

- head, ``sk = HEAD``: the current version and its definition (JSON), the counters, and while
  live ``gsi1pk = TPLS#<owner>``, ``gsi1sk = <category>#<template id>`` (the listing; a deleted
  template leaves it);
- version, ``sk = V#<n:06d>``: one immutable definition, written once with
  ``attribute_not_exists``; its use counter is the only attribute that changes.

Counters (``usage_count`` on the head and on each version) only ever move by ``ADD``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tollgate.aws.dynamodb import (
    ConditionFailed,
    DynamoStagedWrites,
    DynamoTable,
    Item,
    TransactionCancelled,
    Write,
    put,
    update,
)
from tollgate.aws.usage_store import stamp
from tollgate.clock import parse_iso
from tollgate.templates.models import (
    Template,
    TemplateUse,
    TemplateVersion,
    definition_from_json,
    definition_to_json,
)
from tollgate.templates.ports import TemplateExists, VersionConflict

HEAD = "HEAD"
GSI = "gsi1"


def template_pk(owner: str, template_id: str) -> str:
    return f"TPL#{owner}#{template_id}"


def listing_pk(owner: str) -> str:
    return f"TPLS#{owner}"


def version_sk(version: int) -> str:
    return f"V#{version:06d}"


def _listing_sk(template: Template) -> str:
    return f"{template.definition.category}#{template.template_id}"


def _head_item(template: Template) -> Item:
    item: Item = {
        "pk": template_pk(template.owner, template.template_id),
        "sk": HEAD,
        "type": "template",
        "template_id": template.template_id,
        "owner": template.owner,
        "version": template.version,
        "definition": definition_to_json(template.definition),
        "created_at": stamp(template.created_at),
        "created_by": template.created_by,
        "updated_at": stamp(template.updated_at),
        "updated_by": template.updated_by,
    }
    if template.deleted_at is None:
        item["gsi1pk"] = listing_pk(template.owner)
        item["gsi1sk"] = _listing_sk(template)
    else:
        item["deleted_at"] = stamp(template.deleted_at)
    if template.seed_digest is not None:
        item["seed_digest"] = template.seed_digest
    return item


def _version_item(template: Template) -> Item:
    return {
        "pk": template_pk(template.owner, template.template_id),
        "sk": version_sk(template.version),
        "type": "template_version",
        "template_id": template.template_id,
        "owner": template.owner,
        "version": template.version,
        "definition": definition_to_json(template.definition),
        "created_at": stamp(template.updated_at),
        "created_by": template.updated_by,
    }


def _template_of(item: Item) -> Template:
    return Template(
        template_id=str(item["template_id"]),
        owner=str(item["owner"]),
        version=int(item["version"]),
        definition=definition_from_json(str(item["definition"])),
        created_at=parse_iso(str(item["created_at"])),
        created_by=str(item.get("created_by", "")),
        updated_at=parse_iso(str(item["updated_at"])),
        updated_by=str(item.get("updated_by", "")),
        usage_count=int(item.get("usage_count", 0)),
        deleted_at=parse_iso(str(item["deleted_at"])) if item.get("deleted_at") else None,
        seed_digest=item.get("seed_digest"),
    )


def _version_of(item: Item, head: Item | None) -> TemplateVersion:
    return TemplateVersion(
        template_id=str(item["template_id"]),
        owner=str(item["owner"]),
        version=int(item["version"]),
        definition=definition_from_json(str(item["definition"])),
        created_at=parse_iso(str(item["created_at"])),
        created_by=str(item.get("created_by", "")),
        usage_count=int(item.get("usage_count", 0)),
        template_deleted=head is None or bool(head.get("deleted_at")),
    )


def _use_writes(use: TemplateUse) -> tuple[Write, ...]:
    pk = template_pk(use.owner, use.template_id)
    add = "ADD usage_count :one"
    return (
        update({"pk": pk, "sk": HEAD}, add, values={":one": 1}),
        update({"pk": pk, "sk": version_sk(use.version)}, add, values={":one": 1}),
    )


class DynamoTemplateStore:
    """``TemplateStore`` over the Tollgate table."""

    def __init__(self, table: DynamoTable) -> None:
        self._table = table

    def heads(self, owners: Sequence[str], template_id: str) -> list[Template]:
        keys = [{"pk": template_pk(owner, template_id), "sk": HEAD} for owner in owners]
        return [_template_of(item) for item in self._table.batch_get(keys)]

    def version(
        self, owners: Sequence[str], template_id: str, version: int
    ) -> tuple[TemplateVersion | None, Template | None]:
        keys = [
            {"pk": template_pk(owner, template_id), "sk": sk}
            for owner in owners
            for sk in (HEAD, version_sk(version))
        ]
        items = self._table.batch_get(keys)
        heads = {item["pk"]: item for item in items if item["sk"] == HEAD}
        for item in items:
            if item["sk"] != HEAD:
                return _version_of(item, heads.get(item["pk"])), (
                    _template_of(heads[item["pk"]]) if item["pk"] in heads else None
                )
        head = next(iter(heads.values()), None)
        return None, _template_of(head) if head is not None else None

    def create(self, template: Template) -> None:
        try:
            self._table.transact(
                [
                    put(_head_item(template), "attribute_not_exists(pk)"),
                    put(_version_item(template), "attribute_not_exists(pk)"),
                ]
            )
        except TransactionCancelled:
            raise TemplateExists(template.template_id) from None

    def save_version(self, template: Template, previous_version: int) -> None:
        head = _head_item(template)
        # An update, not a put: the head's counters move by ADD and must survive it.
        fields = {k: v for k, v in head.items() if k not in ("pk", "sk")}
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values: dict[str, Any] = {f":f{i}": value for i, value in enumerate(fields.values())}
        values[":previous"] = previous_version
        expression = "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
        try:
            self._table.transact(
                [
                    update(
                        {"pk": head["pk"], "sk": HEAD},
                        expression,
                        condition="#version = :previous AND attribute_not_exists(deleted_at)",
                        names={**names, "#version": "version"},
                        values=values,
                    ),
                    put(_version_item(template), "attribute_not_exists(pk)"),
                ]
            )
        except TransactionCancelled:
            raise VersionConflict(template.template_id) from None

    def mark_deleted(self, template: Template, at: datetime, by: str) -> None:
        try:
            self._table.update(
                template_pk(template.owner, template.template_id),
                HEAD,
                "SET deleted_at = :at, updated_at = :at, updated_by = :by REMOVE gsi1pk, gsi1sk",
                condition="#version = :version AND attribute_not_exists(deleted_at)",
                names={"#version": "version"},
                values={":at": stamp(at), ":by": by, ":version": template.version},
            )
        except ConditionFailed:
            raise VersionConflict(template.template_id) from None

    def page(
        self, owner: str, category: str | None, limit: int, start: Mapping[str, Any] | None
    ) -> tuple[list[Template], dict[str, Any] | None]:
        condition = "gsi1pk = :pk"
        values: dict[str, Any] = {":pk": listing_pk(owner)}
        if category is not None:
            condition += " AND begins_with(gsi1sk, :category)"
            values[":category"] = f"{category}#"
        items, last = self._table.query(condition, index=GSI, values=values, limit=limit, start_key=start)
        return [_template_of(item) for item in items], last

    def check_start(self, owner: str, category: str | None, start: Mapping[str, Any]) -> bool:
        if set(start) != {"pk", "sk", "gsi1pk", "gsi1sk"} or not all(
            isinstance(v, str) for v in start.values()
        ):
            return False
        prefix = f"{category}#" if category is not None else ""
        return (
            start["gsi1pk"] == listing_pk(owner)
            and start["sk"] == HEAD
            and str(start["pk"]).startswith(f"TPL#{owner}#")
            and str(start["gsi1sk"]).startswith(prefix)
        )

    def stage_use(self, use: TemplateUse) -> DynamoStagedWrites:
        return DynamoStagedWrites(_use_writes(use))

    def count_use(self, use: TemplateUse) -> None:
        self._table.transact(_use_writes(use))
