"""Bodies of the accounts API: health, me, orgs and keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field

from tollgate.api.params import validate_json_value
from tollgate.api.schemas.common import RequestModel, ResponseModel
from tollgate.errors import FieldError, ValidationFailed
from tollgate.identity.models import KeyRecord, Org
from tollgate.identity.service import IssuedKey
from tollgate.plans import LimitSpec, check_overrides

UserName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@+-]+$")]
DisplayName = Annotated[str, Field(min_length=1, max_length=100)]


class CreateOrgRequest(RequestModel):
    name: DisplayName
    plan: str = Field("free", min_length=1, max_length=40)
    billing_anchor_day: int = Field(1, ge=1, le=28)


class OrgSettingsPatch(RequestModel):
    """The org settings a request may change; a field sent as ``null`` goes back to its default.

    ``content_policy``: one action per finding (``block``, ``redact``, ``flag``, ``allow``) for
    ``prompt_injection``, ``secret``, ``card_number``, ``email``, ``phone``, plus
    ``injection_threshold`` and ``injection_roles`` (docs/generation.md). ``keep_prompts``:
    false keeps only a hash of each prompt on request records."""

    content_policy: dict[str, Any] | None = None
    keep_prompts: bool | None = None


class UpdateOrgRequest(RequestModel):
    name: DisplayName | None = None
    plan: str | None = Field(None, min_length=1, max_length=40)
    settings: OrgSettingsPatch | None = None
    limit_overrides: list[dict[str, Any]] | None = Field(None, max_length=50)


class CreateKeyRequest(RequestModel):
    name: DisplayName
    user: UserName
    role: Literal["owner", "member"] = "member"
    expires_at: AwareDatetime | None = None


class RotateKeyRequest(RequestModel):
    grace_seconds: int = Field(0, ge=0, le=604_800)


class HealthOut(ResponseModel):
    status: str
    version: str
    time: datetime


class OrgOut(ResponseModel):
    org_id: str
    name: str
    plan: str
    billing_anchor_day: int
    created_at: datetime
    settings: dict[str, Any]
    limit_overrides: list[dict[str, Any]]

    @classmethod
    def of(cls, org: Org) -> OrgOut:
        return cls(
            org_id=org.org_id,
            name=org.name,
            plan=org.plan,
            billing_anchor_day=org.billing_anchor_day,
            created_at=org.created_at,
            settings=dict(org.settings),
            limit_overrides=[dict(spec) for spec in org.limit_overrides],
        )


class KeyOut(ResponseModel):
    key_id: str
    org_id: str | None
    user: str
    name: str
    role: str
    hint: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_to: str | None

    @classmethod
    def of(cls, record: KeyRecord) -> KeyOut:
        return cls(
            key_id=record.key_id,
            org_id=record.org_id,
            user=record.user,
            name=record.name,
            role=record.role.value,
            hint=record.hint,
            created_at=record.created_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            last_used_at=record.last_used_at,
            rotated_to=record.rotated_to,
        )


class IssuedKeyOut(KeyOut):
    key: str = Field(description="The API key. Shown this once: Tollgate keeps only its HMAC.")

    @classmethod
    def issued(cls, issued: IssuedKey) -> IssuedKeyOut:
        return cls(key=issued.plain.value, **KeyOut.of(issued.record).model_dump())


class KeyListOut(ResponseModel):
    items: list[KeyOut]


class MeOut(ResponseModel):
    key_id: str
    user: str
    role: str
    org_id: str | None
    plan: str | None
    org: OrgOut | None


def valid_content_policy(raw: Any) -> dict[str, Any]:
    """A content policy as stored in org settings, validated field by field (422 naming
    ``settings.content_policy.<field>``). The detectors load only here, not at cold start."""
    from tollgate.generation.security import ContentPolicy

    return validate_json_value(ContentPolicy, raw, "settings.content_policy").model_dump(mode="json")


def valid_limit_overrides(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Limit overrides validated as ``LimitSpec`` (422 naming ``limit_overrides.<n>.<field>``),
    each limit named once."""
    errors: list[FieldError] = []
    specs = []
    for index, spec in enumerate(raw):
        try:
            specs.append(validate_json_value(LimitSpec, spec, f"limit_overrides.{index}"))
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    try:
        check_overrides(specs)
    except ValueError as exc:
        raise ValidationFailed([FieldError("limit_overrides", str(exc), "duplicate")]) from None
    return [spec.model_dump(mode="json") for spec in specs]
