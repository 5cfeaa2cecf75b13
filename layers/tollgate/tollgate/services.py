"""The composition root: domain services wired to their AWS adapters, built once per
process from the settings. Handlers ask here; the domain never does."""

from __future__ import annotations

from datetime import timedelta
from functools import cache

from tollgate.aws.dynamodb import DynamoTable
from tollgate.aws.generation_store import DynamoGenerationStore
from tollgate.aws.idempotency_store import DynamoIdempotencyStore
from tollgate.aws.identity_store import DynamoIdentityStore
from tollgate.aws.metering_store import DynamoMeteringStore
from tollgate.aws.provider_keys import ParameterProviderKeys
from tollgate.aws.response_cache import S3ResponseCache
from tollgate.aws.secrets import ParameterSecrets
from tollgate.generation.registry import load_models
from tollgate.generation.security import ContentLimits
from tollgate.generation.service import GenerationService
from tollgate.identity.service import IdentityService
from tollgate.metering.pricing import default_pricing
from tollgate.metering.service import MeteringService
from tollgate.plans import load_plans
from tollgate.providers.catalog import ProviderCatalog, build_providers
from tollgate.providers.keys import ChainedProviderKeys, EnvProviderKeys, ProviderKeySource
from tollgate.settings import get_settings


@cache
def table() -> DynamoTable:
    return DynamoTable(get_settings().table_name)


@cache
def identity_secrets() -> ParameterSecrets:
    settings = get_settings()
    return ParameterSecrets(
        settings.key_pepper_secret, settings.admin_key_parameter, max_age=settings.secrets_cache_seconds
    )


@cache
def identity() -> IdentityService:
    settings = get_settings()
    return IdentityService(
        DynamoIdentityStore(table()),
        identity_secrets(),
        plan_names=load_plans().names,
        last_used_resolution=timedelta(seconds=settings.key_last_used_resolution_seconds),
    )


@cache
def idempotency_store() -> DynamoIdempotencyStore:
    return DynamoIdempotencyStore(table())


@cache
def metering() -> MeteringService:
    """Limits, quotas and the credit ledger: the API every feature charges through."""
    return MeteringService(DynamoMeteringStore(table()), default_pricing(), load_plans())


@cache
def providers() -> ProviderCatalog:
    """Every AI provider: keys from the environment first (local), then Secrets Manager/SSM."""
    settings = get_settings()
    sources: list[ProviderKeySource] = [EnvProviderKeys.from_settings(settings)]
    aws_keys = ParameterProviderKeys.from_settings(settings)
    if aws_keys is not None:
        sources.append(aws_keys)
    return build_providers(settings, ChainedProviderKeys(sources))


@cache
def generation() -> GenerationService:
    """Chat, completions and embeddings: checked, cached, charged and recorded."""
    settings = get_settings()
    return GenerationService(
        providers(),
        metering(),
        DynamoGenerationStore(table(), timedelta(days=settings.usage_log_retention_days)),
        S3ResponseCache(settings.cache_bucket),
        load_models(),
        ContentLimits.from_settings(settings),
    )


def idempotency_ttl() -> int:
    return get_settings().idempotency_ttl_seconds


def reset() -> None:
    """Forget every built service and the settings (tests that change the environment)."""
    from tollgate.aws import clients

    for built in (
        table,
        identity_secrets,
        identity,
        idempotency_store,
        metering,
        providers,
        generation,
        get_settings,
    ):
        built.cache_clear()
    clients.reset()
