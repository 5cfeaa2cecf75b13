"""The body of ``POST /v1/templates/{id}/generate`` (on the generate function): ``/v1/generate``'s
template fields, the template's id taken from the path."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from tollgate.generation.cache_key import CacheOptions
from tollgate.generation.requests import SamplingParams, plain_numbers


class TemplateGenerateRequest(BaseModel):
    """``POST /v1/templates/{id}/generate``: ``/v1/generate``'s template fields, the template's
    id taken from the path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variables: dict[str, Any] | None = None
    version: int | None = Field(default=None, ge=1)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    params: SamplingParams = Field(default_factory=SamplingParams)
    feature: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    cache: CacheOptions | None = None
    metadata: Annotated[dict[str, Any] | None, BeforeValidator(plain_numbers)] = Field(
        default=None, max_length=16
    )

    def generate_body(self, template_id: str) -> dict[str, Any]:
        """The equivalent ``GenerateRequest`` body."""
        body: dict[str, Any] = {"template_id": template_id}
        for name in ("variables", "model", "feature", "cache", "metadata"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.version is not None:
            body["template_version"] = self.version
        if "params" in self.model_fields_set:
            body["params"] = self.params.model_dump(exclude_unset=True)
        return body
