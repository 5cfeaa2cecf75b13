"""The environment of a function, read once and validated.

Every environment variable Tollgate reads is a field here, named by its alias exactly as in
``template.yaml`` (a test compares the two). Nothing else reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    stage: str = Field("dev", alias="STAGE")
    table_name: str = Field("tollgate", alias="TABLE_NAME")
    key_pepper_secret: str = Field("tollgate/key-pepper", alias="KEY_PEPPER_SECRET")
    admin_key_parameter: str = Field("/tollgate/admin-key", alias="ADMIN_KEY_PARAMETER")
    max_body_bytes: int = Field(1_048_576, alias="MAX_BODY_BYTES", ge=1024)
    idempotency_ttl_seconds: int = Field(86_400, alias="IDEMPOTENCY_TTL_SECONDS", ge=86_400)
    secrets_cache_seconds: int = Field(300, alias="SECRETS_CACHE_SECONDS", ge=0)
    key_last_used_resolution_seconds: int = Field(3600, alias="KEY_LAST_USED_RESOLUTION_SECONDS", ge=60)
    # Credits surfaces (issue 3): the alerts bus, and the payment webhook's signing secret.
    event_bus_name: str | None = Field(None, alias="EVENT_BUS_NAME", min_length=1)
    payment_webhook_secret: str = Field("tollgate/payment-webhook", alias="PAYMENT_WEBHOOK_SECRET")
    webhook_tolerance_seconds: int = Field(300, alias="WEBHOOK_TOLERANCE_SECONDS", ge=30, le=3600)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        aliases = {field.alias for field in cls.model_fields.values() if field.alias}
        return cls.model_validate({name: value for name, value in env.items() if name in aliases})

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """Every environment variable this model reads."""
        return frozenset(field.alias for field in cls.model_fields.values() if field.alias)


@cache
def get_settings() -> Settings:
    """The settings of this process, read on first use (never at import time)."""
    return Settings.from_env()
