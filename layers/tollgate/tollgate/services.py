"""The composition root: domain services wired to their AWS adapters, built once per
process from the settings. Handlers ask here; the domain never does."""

from __future__ import annotations

from datetime import timedelta
from functools import cache

from tollgate.aws.dynamodb import DynamoTable
from tollgate.aws.idempotency_store import DynamoIdempotencyStore
from tollgate.aws.identity_store import DynamoIdentityStore
from tollgate.aws.secrets import ParameterSecrets
from tollgate.identity.service import IdentityService
from tollgate.plans import load_plans
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


def idempotency_ttl() -> int:
    return get_settings().idempotency_ttl_seconds


def reset() -> None:
    """Forget every built service and the settings (tests that change the environment)."""
    from tollgate.aws import clients

    for built in (table, identity_secrets, identity, idempotency_store, get_settings):
        built.cache_clear()
    clients.reset()
