"""The environment of a function, read once and validated.

Every environment variable Tollgate reads is a field here, named by its alias exactly as in
``template.yaml`` (a test compares the two). Nothing else reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.config import JsonDict

# Marks a variable read only outside AWS (local runs): no template sets it.
LOCAL_ONLY: JsonDict = {"local_only": True}


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
    # Held reservations older than this are released by the scheduler (a request that died).
    stale_reservation_seconds: int = Field(7200, alias="STALE_RESERVATION_SECONDS", ge=900)

    # Providers (issue 4, docs/providers.md). In AWS the keys are one JSON secret
    # {"openai": "sk-...", ...} named by PROVIDER_KEYS_SECRET (Secrets Manager) or
    # PROVIDER_KEYS_PARAMETER (SSM SecureString). The *_API_KEY variables are for local runs
    # only: a template must never carry a key (LOCAL_ONLY marks them).
    provider_keys_secret: str | None = Field(None, alias="PROVIDER_KEYS_SECRET")
    provider_keys_parameter: str | None = Field(None, alias="PROVIDER_KEYS_PARAMETER")
    openai_api_key: SecretStr | None = Field(None, alias="OPENAI_API_KEY", json_schema_extra=LOCAL_ONLY)
    anthropic_api_key: SecretStr | None = Field(None, alias="ANTHROPIC_API_KEY", json_schema_extra=LOCAL_ONLY)
    gemini_api_key: SecretStr | None = Field(None, alias="GEMINI_API_KEY", json_schema_extra=LOCAL_ONLY)
    stability_api_key: SecretStr | None = Field(None, alias="STABILITY_API_KEY", json_schema_extra=LOCAL_ONLY)
    ollama_base_url: str | None = Field(None, alias="OLLAMA_BASE_URL")
    openai_base_url: str = Field("https://api.openai.com", alias="OPENAI_BASE_URL", min_length=8)
    anthropic_base_url: str = Field("https://api.anthropic.com", alias="ANTHROPIC_BASE_URL", min_length=8)
    gemini_base_url: str = Field(
        "https://generativelanguage.googleapis.com", alias="GEMINI_BASE_URL", min_length=8
    )
    stability_base_url: str = Field("https://api.stability.ai", alias="STABILITY_BASE_URL", min_length=8)
    provider_timeout_seconds: float = Field(20.0, alias="PROVIDER_TIMEOUT_SECONDS", gt=0, le=900)
    provider_image_timeout_seconds: float = Field(60.0, alias="PROVIDER_IMAGE_TIMEOUT_SECONDS", gt=0, le=900)
    provider_connect_timeout_seconds: float = Field(
        3.0, alias="PROVIDER_CONNECT_TIMEOUT_SECONDS", gt=0, le=60
    )
    provider_max_attempts: int = Field(3, alias="PROVIDER_MAX_ATTEMPTS", ge=1, le=10)
    provider_retry_base_seconds: float = Field(0.25, alias="PROVIDER_RETRY_BASE_SECONDS", ge=0, le=60)
    provider_retry_max_seconds: float = Field(4.0, alias="PROVIDER_RETRY_MAX_SECONDS", ge=0, le=300)
    provider_retry_after_cap_seconds: float = Field(
        10.0, alias="PROVIDER_RETRY_AFTER_CAP_SECONDS", ge=0, le=300
    )
    provider_retry_budget_seconds: float = Field(20.0, alias="PROVIDER_RETRY_BUDGET_SECONDS", ge=0, le=900)
    mock_provider_enabled: bool = Field(True, alias="MOCK_PROVIDER_ENABLED")
    mock_embedding_dimensions: int = Field(256, alias="MOCK_EMBEDDING_DIMENSIONS", ge=8, le=4096)
    prompt_max_chars: int = Field(200_000, alias="PROMPT_MAX_CHARS", ge=1)
    prompt_max_messages: int = Field(256, alias="PROMPT_MAX_MESSAGES", ge=1)
    # Generation (issue 4, docs/generation.md): the response cache bucket and log retention.
    cache_bucket: str = Field("tollgate-cache", alias="CACHE_BUCKET", min_length=3)
    usage_log_retention_days: int = Field(90, alias="USAGE_LOG_RETENTION_DAYS", ge=1, le=3650)

    # Images (issue 5, docs/images.md): the jobs queue, the assets bucket and its presigned URLs,
    # the queue's maxReceiveCount (the worker's last attempt releases the job's credits), and
    # how many images POST /v1/images/generations makes inline.
    image_jobs_queue_url: str | None = Field(None, alias="IMAGE_JOBS_QUEUE_URL", min_length=1)
    assets_bucket: str = Field("tollgate-assets", alias="ASSETS_BUCKET", min_length=3)
    asset_url_ttl_seconds: int = Field(3600, alias="ASSET_URL_TTL_SECONDS", ge=60, le=604_800)
    image_job_max_receive_count: int = Field(5, alias="IMAGE_JOB_MAX_RECEIVE_COUNT", ge=1, le=1000)
    image_sync_max_images: int = Field(4, alias="IMAGE_SYNC_MAX_IMAGES", ge=1, le=10)

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
